//! `signpost run`'s ClusterIP mode (issue 30): its flags, the HTTPS server of the admission
//! webhook, and what the leader does when it starts leading.
//!
//! In a pod (`POD_NAME` and `POD_NAMESPACE` set), the leader labels its own pod
//! [`LEADER_LABEL`]`=`[`LEADER_VALUE`] and every replica clears the label at start: the chart's
//! webhook Service selects the label, so the API server calls the replica that chooses, not a
//! standby that would let the Service through to the API server's own range.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use signpost_controllers::app::Running;
use signpost_controllers::ipam::cluster_ip::{Leader, publish_service_cidr, webhook_router};
use signpost_controllers::runtime::server::{serve_router_tls, tls_config};

#[derive(Args, Debug)]
pub struct ClusterIpArgs {
    /// ClusterIP mode: Signpost's addresses become the Services' own ClusterIPs, written at
    /// creation by its admission webhook; the API server accepts them through a ServiceCIDR
    /// Signpost publishes. Needs --webhook-cert-file and --webhook-key-file.
    #[arg(long, value_name = "BOOL", env = "SIGNPOST_CLUSTER_IP_MODE", default_value_t = false, action = clap::ArgAction::Set)]
    pub cluster_ip_mode: bool,

    /// Address the admission webhook answers on (HTTPS), in ClusterIP mode.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SIGNPOST_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    pub webhook_addr: SocketAddr,

    /// The webhook's certificate chain (PEM), which the API server must trust.
    #[arg(long, value_name = "FILE", env = "SIGNPOST_WEBHOOK_CERT_FILE")]
    pub webhook_cert_file: Option<PathBuf>,

    /// The webhook's private key (PEM).
    #[arg(long, value_name = "FILE", env = "SIGNPOST_WEBHOOK_KEY_FILE")]
    pub webhook_key_file: Option<PathBuf>,

    /// Name of the ServiceCIDR object that covers --service-cidr, in ClusterIP mode.
    #[arg(
        long,
        value_name = "NAME",
        env = "SIGNPOST_SERVICE_CIDR_NAME",
        default_value = "signpost"
    )]
    pub service_cidr_name: String,
}

/// The label the leader puts on its own pod; the chart's webhook Service selects it.
pub const LEADER_LABEL: &str = "signpost.dev/webhook";
/// Its value.
pub const LEADER_VALUE: &str = "leader";

/// The webhook of a replica in ClusterIP mode: what it answers with while it leads.
pub struct Webhook {
    leader: Leader,
    client: kube::Client,
    service_cidr_name: String,
    cidrs: Vec<IpNet>,
    /// This replica's pod (namespace, name), when it runs in one.
    pod: Option<(String, String)>,
}

/// Sets (`Some`) or removes (`None`) the leader label on `pod`.
async fn label_pod(
    client: &kube::Client,
    (namespace, name): &(String, String),
    value: Option<&str>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: value}}});
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

impl Webhook {
    /// Checks the flags and starts answering (as a standby) on --webhook-addr; `None` when
    /// ClusterIP mode is off. Errors name the flag.
    pub async fn start(
        args: &ClusterIpArgs,
        client: &kube::Client,
        cidrs: &[IpNet],
    ) -> anyhow::Result<Option<Self>> {
        if !args.cluster_ip_mode {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&args.webhook_cert_file, &args.webhook_key_file) else {
            anyhow::bail!(
                "--cluster-ip-mode needs --webhook-cert-file and --webhook-key-file (the API server calls the webhook over HTTPS)"
            );
        };
        let config = tls_config(cert, key).context("--webhook-cert-file/--webhook-key-file")?;
        let listener = tokio::net::TcpListener::bind(args.webhook_addr)
            .await
            .with_context(|| format!("--webhook-addr {}: cannot listen", args.webhook_addr))?;
        let leader = Leader::default();
        let router = webhook_router(leader.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_router_tls(listener, router, config).await {
                tracing::error!(%error, "the admission webhook stopped");
            }
        });
        tracing::info!(addr = %args.webhook_addr, "admission webhook listening");
        let pod = std::env::var("POD_NAMESPACE")
            .ok()
            .zip(std::env::var("POD_NAME").ok());
        if let Some(pod) = &pod {
            // A label left by this pod's previous process, which led and exited: a standby
            // must not receive the API server's calls.
            if let Err(error) = label_pod(client, pod, None).await {
                tracing::warn!(%error, pod = %pod.1, "cannot remove the label {LEADER_LABEL} from this pod");
            }
        }
        Ok(Some(Self {
            leader,
            client: client.clone(),
            service_cidr_name: args.service_cidr_name.clone(),
            cidrs: cidrs.to_vec(),
            pod,
        }))
    }

    /// This replica leads with `running`: the ServiceCIDR is published and the webhook
    /// chooses addresses through its IPAM controller.
    pub async fn leading(&self, running: &Running) -> anyhow::Result<()> {
        publish_service_cidr(&self.client, &self.service_cidr_name, &self.cidrs)
            .await
            .with_context(|| format!("publishing ServiceCIDR {}", self.service_cidr_name))?;
        self.leader.set(Some(running.ipam()));
        if let Some(pod) = self.pod.clone() {
            // Until the label is on, the API server calls no replica (failurePolicy Ignore):
            // retried until it is, rather than leading unseen.
            let client = self.client.clone();
            tokio::spawn(async move {
                while let Err(error) = label_pod(&client, &pod, Some(LEADER_VALUE)).await {
                    tracing::error!(%error, pod = %pod.1, "cannot label this pod {LEADER_LABEL}={LEADER_VALUE}; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                tracing::info!(pod = %pod.1, "labelled {LEADER_LABEL}={LEADER_VALUE}: the webhook Service now selects this replica");
            });
        }
        Ok(())
    }

    /// This replica no longer leads: Services go through unchanged.
    pub fn standing_by(&self) {
        self.leader.set(None);
    }
}
