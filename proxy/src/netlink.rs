//! The VIPs on a dummy interface, through netlink (`rtnetlink`).
//!
//! A socket can only listen on an address the kernel considers local, so every VIP the proxy
//! serves is added to a dummy interface of its own (`signpost0` by default): packets to the VIP
//! are then delivered locally and reach the proxy's listener. The interface is the proxy's
//! alone, so at start-up every address on it that no Service claims is removed (leftovers of
//! a previous run). Netlink is spoken directly: no `ip` subprocess, no parsing of its output.
//!
//! Some kernels are built without the `dummy` driver (netlink answers EOPNOTSUPP). A Linux
//! bridge without ports behaves the same for this purpose (addresses on it are local, nothing
//! is forwarded anywhere), so the interface is created as one instead, with a warning.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::{Handle, LinkBridge, LinkDummy, LinkUnspec};

/// errno values netlink answers with that are not failures here.
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;
const EADDRNOTAVAIL: i32 = 99;

/// A dummy interface whose addresses the proxy owns.
pub struct Interface {
    handle: Handle,
    name: String,
    index: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Interface {
    /// Opens a netlink socket (in the caller's network namespace), creates the dummy interface
    /// `name` if it does not exist yet, and brings it up. Needs `CAP_NET_ADMIN`.
    pub async fn ensure(name: &str) -> anyhow::Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        let task = tokio::spawn(connection);
        let index = match link_index(&handle, name).await? {
            Some(index) => index,
            None => {
                let mut created = handle
                    .link()
                    .add(LinkDummy::new(name).build())
                    .execute()
                    .await;
                if let Err(error) = &created
                    && errno(error) == Some(EOPNOTSUPP)
                {
                    tracing::warn!(
                        interface = name,
                        "the kernel has no dummy interface driver; using a bridge without ports"
                    );
                    created = handle
                        .link()
                        .add(LinkBridge::new(name).build())
                        .execute()
                        .await;
                }
                match created {
                    Ok(()) => {}
                    Err(error) if errno(&error) == Some(EEXIST) => {}
                    Err(error) => {
                        return Err(error).with_context(|| {
                            format!("creating dummy interface {name} (needs CAP_NET_ADMIN)")
                        });
                    }
                }
                match link_index(&handle, name).await? {
                    Some(index) => index,
                    None => bail!("interface {name} vanished right after it was created"),
                }
            }
        };
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("bringing interface {name} up"))?;
        Ok(Self {
            handle,
            name: name.to_string(),
            index,
            task,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The addresses currently on the interface, except IPv6 link-local ones (the kernel's,
    /// never a VIP).
    pub async fn addresses(&self) -> anyhow::Result<BTreeSet<IpAddr>> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute();
        let mut out = BTreeSet::new();
        while let Some(message) = stream
            .try_next()
            .await
            .with_context(|| format!("listing the addresses of {}", self.name))?
        {
            if message.header.index != self.index {
                continue;
            }
            for attribute in &message.attributes {
                if let AddressAttribute::Address(ip) = attribute
                    && !is_link_local(*ip)
                {
                    out.insert(*ip);
                }
            }
        }
        Ok(out)
    }

    /// Adds `ip` as a host address (/32 or /128). IPv6 addresses skip duplicate address
    /// detection, which would keep them "tentative" (unbindable) for a second or more.
    /// Adding an address that is already there is not an error.
    pub async fn add(&self, ip: IpAddr) -> anyhow::Result<()> {
        let mut request = self.handle.address().add(self.index, ip, host_prefix(ip));
        if ip.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(error) if errno(&error) == Some(EEXIST) => Ok(()),
            Err(error) => {
                Err(error).with_context(|| format!("adding address {ip} to {}", self.name))
            }
        }
    }

    /// Removes `ip`; removing an address that is not there is not an error.
    pub async fn remove(&self, ip: IpAddr) -> anyhow::Result<()> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .set_address_filter(ip)
            .execute();
        let mut found = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .with_context(|| format!("looking up address {ip} on {}", self.name))?
        {
            if message.header.index == self.index {
                found.push(message);
            }
        }
        for message in found {
            match self.handle.address().del(message).execute().await {
                Ok(()) => {}
                Err(error) if errno(&error) == Some(EADDRNOTAVAIL) => {}
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("removing address {ip} from {}", self.name));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// The prefix length of a single address of `ip`'s family.
fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

async fn link_index(handle: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(error) if errno(&error) == Some(ENODEV) => Ok(None),
        Err(error) => Err(error).with_context(|| format!("looking up interface {name}")),
    }
}

/// The positive errno of a netlink error answer, if it is one.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| code.get().abs()),
        _ => None,
    }
}
