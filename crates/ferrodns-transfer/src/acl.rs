//! Who may transfer zones: configured TSIG keys, or configured networks.

use std::net::IpAddr;

use ferrodns_proto::tsig::Key;
use ferrodns_proto::Name;

pub use ferrodns_proto::network::Network;

/// Which zones a TSIG key may transfer, NOTIFY or query: those of one
/// tenant, and only the listed ones. Both `None`: every zone, as for the
/// keys of the server's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyScope {
    pub tenant: Option<String>,
    /// Lowercase zone apexes.
    pub zones: Option<Vec<Name>>,
}

impl KeyScope {
    /// True when the key reaches every zone of every tenant.
    pub fn is_server_wide(&self) -> bool {
        self.tenant.is_none() && self.zones.is_none()
    }

    /// Whether the key reaches `apex` (lowercase), held by `tenant` (`None`
    /// when this server does not know who holds it: then a key limited to a
    /// tenant does not reach it).
    pub fn allows(&self, apex: &Name, tenant: Option<&str>) -> bool {
        let tenant_ok = match &self.tenant {
            None => true,
            Some(own) => tenant == Some(own.as_str()),
        };
        tenant_ok && self.zones.as_ref().is_none_or(|zones| zones.contains(apex))
    }
}

/// The transfer policy: a request passes with a verified TSIG key (one
/// configured at start, or one made through the API) for a zone in the
/// key's scope, or from an address inside `networks`.
#[derive(Debug, Default)]
pub struct Access {
    pub networks: Vec<Network>,
    /// Keys from the configuration; they reach every zone.
    pub keys: Vec<Key>,
    /// Keys from the API (`/v1/tsigkeys`) with their scopes, replaced whole
    /// on each change.
    api_keys: arc_swap::ArcSwap<Vec<(Key, KeyScope)>>,
}

impl Clone for Access {
    fn clone(&self) -> Access {
        Access {
            networks: self.networks.clone(),
            keys: self.keys.clone(),
            api_keys: arc_swap::ArcSwap::new(self.api_keys.load_full()),
        }
    }
}

impl Access {
    /// The key named `name`, configured or from the API.
    pub fn key(&self, name: &Name) -> Option<Key> {
        self.keys
            .iter()
            .find(|k| k.name == *name)
            .cloned()
            .or_else(|| self.api_keys.load().iter().find(|(k, _)| k.name == *name).map(|(k, _)| k.clone()))
    }

    /// The scope of the key named `name`: server-wide for a configured key
    /// (and for one this server does not know, which never verifies).
    pub fn scope(&self, name: &Name) -> KeyScope {
        if self.is_configured(name) {
            return KeyScope::default();
        }
        self.api_keys.load().iter().find(|(k, _)| k.name == *name).map(|(_, scope)| scope.clone()).unwrap_or_default()
    }

    /// True if `name` is a configured key (which the API cannot replace).
    pub fn is_configured(&self, name: &Name) -> bool {
        self.keys.iter().any(|k| k.name == *name)
    }

    /// Replaces the keys made through the API.
    pub fn set_api_keys(&self, keys: Vec<(Key, KeyScope)>) {
        self.api_keys.store(std::sync::Arc::new(keys));
    }

    /// True if `peer` is inside an allowed network.
    pub fn allows_address(&self, peer: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(peer))
    }
}
