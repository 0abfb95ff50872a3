//! The capabilities `signpost proxy` needs, put in effect at start-up.
//!
//! The proxy adds VIPs to an interface over netlink (`CAP_NET_ADMIN`) and listens on VIP
//! ports below 1024 (`CAP_NET_BIND_SERVICE`). Run as root, it has both in effect already.
//! Run as the image's unprivileged user, it has them only as *permitted* capabilities: the
//! image's binary carries them as permitted file capabilities (not effective, so that a
//! container dropping ALL, such as the controller's, still starts it), the container adds
//! both, and the kernel grants the intersection at exec. Permitted is not in effect: the
//! process raises them itself, before it starts any thread (capabilities are per thread and
//! new threads inherit the creator's).

use caps::{CapSet, Capability, CapsHashSet};

/// Without it the proxy cannot put a single VIP on its interface.
const REQUIRED: Capability = Capability::CAP_NET_ADMIN;
/// Without it only VIP ports below 1024 fail, each with its own error and retry.
const WANTED: Capability = Capability::CAP_NET_BIND_SERVICE;

/// Why the proxy cannot have what it needs.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Neither in effect nor permitted: nothing the process can do about it.
    #[error(
        "signpost proxy needs {0}, which this process has neither in effect nor permitted: run \
         it as root, or as the image's user in a container that adds NET_ADMIN and \
         NET_BIND_SERVICE (see docs/proxy.md)"
    )]
    Missing(Capability),
    /// Reading or setting the thread's capability sets failed.
    #[error("cannot raise the proxy's capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
}

/// What [`plan`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Capabilities to raise from permitted to effective.
    pub raise: Vec<Capability>,
    /// Wanted capabilities the process cannot have (ports below 1024 will fail).
    pub unavailable: Vec<Capability>,
}

/// Which capabilities to raise, given the thread's effective and permitted sets.
pub fn plan(effective: &CapsHashSet, permitted: &CapsHashSet) -> Result<Plan, Capability> {
    let mut plan = Plan {
        raise: Vec::new(),
        unavailable: Vec::new(),
    };
    for (cap, required) in [(REQUIRED, true), (WANTED, false)] {
        if effective.contains(&cap) {
            continue;
        }
        if permitted.contains(&cap) {
            plan.raise.push(cap);
        } else if required {
            return Err(cap);
        } else {
            plan.unavailable.push(cap);
        }
    }
    Ok(plan)
}

/// Puts the proxy's capabilities in effect on the calling thread. Call it before any other
/// thread starts (the async runtime's workers inherit the result).
pub fn raise() -> Result<Plan, PrivilegeError> {
    let effective = caps::read(None, CapSet::Effective)?;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let plan = plan(&effective, &permitted).map_err(PrivilegeError::Missing)?;
    for cap in &plan.raise {
        caps::raise(None, CapSet::Effective, *cap)?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn root_raises_nothing() {
        let all = caps::all();
        assert_eq!(
            plan(&all, &all),
            Ok(Plan {
                raise: vec![],
                unavailable: vec![]
            })
        );
    }

    #[test]
    fn the_images_user_raises_both_permitted_capabilities() {
        let permitted = set(&[REQUIRED, WANTED]);
        assert_eq!(
            plan(&set(&[]), &permitted),
            Ok(Plan {
                raise: vec![REQUIRED, WANTED],
                unavailable: vec![]
            })
        );
    }

    #[test]
    fn without_net_admin_the_proxy_cannot_start() {
        assert_eq!(plan(&set(&[]), &set(&[WANTED])), Err(REQUIRED));
        let message = PrivilegeError::Missing(REQUIRED).to_string();
        assert!(message.contains("CAP_NET_ADMIN"), "{message}");
    }

    #[test]
    fn without_net_bind_service_only_low_ports_are_lost() {
        assert_eq!(
            plan(&set(&[REQUIRED]), &set(&[REQUIRED])),
            Ok(Plan {
                raise: vec![],
                unavailable: vec![WANTED]
            })
        );
    }
}
