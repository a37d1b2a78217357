//! The agencies connected to the hub as this process knows them now. The configuration
//! seeds them; the directory's table (`directory.agencies`, changed through the
//! `Directory` API) is the truth once the directory has started, and every process
//! follows it (`himaya_store::agencies`), replacing the whole set at once. Readers take
//! a snapshot (an `Arc` of the map): a lookup is one read lock and a map lookup by id,
//! never a scan, and a change never tears a reader's view.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::AgencySettings;

/// Every agency by id, at one moment.
pub type AgencyMap = BTreeMap<String, Arc<AgencySettings>>;

/// The live set of agencies. Cloning it copies the present set into a set of its own
/// (two hubs built from one configuration in one process follow their own directories).
pub struct Agencies {
    cell: RwLock<Arc<AgencyMap>>,
    /// SHA-256 fingerprints of the revoked certificates that have not expired yet.
    revoked: RwLock<Arc<HashSet<[u8; 32]>>>,
    /// What the configuration said, kept when the directory's set first replaces it:
    /// what the directory seeds its table from, and where `configuration` tokens are.
    configured: RwLock<Option<Arc<AgencyMap>>>,
}

impl Agencies {
    pub fn new(map: AgencyMap) -> Agencies {
        Agencies {
            cell: RwLock::new(Arc::new(map)),
            revoked: RwLock::new(Arc::default()),
            configured: RwLock::new(None),
        }
    }

    /// Whether the certificate whose fingerprint `fingerprint` gives was revoked. The
    /// fingerprint (a hash of the certificate) is computed only when some certificate is
    /// revoked: most of the time none is, and a call pays nothing for the check.
    pub fn is_revoked(&self, fingerprint: impl FnOnce() -> [u8; 32]) -> bool {
        let set = match self.revoked.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        !set.is_empty() && set.contains(&fingerprint())
    }

    /// Replaces the revoked certificates (the directory's follower).
    pub fn replace_revoked(&self, set: HashSet<[u8; 32]>) {
        let set = Arc::new(set);
        match self.revoked.write() {
            Ok(mut g) => *g = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    /// The agencies as the configuration gave them, whatever the directory says since.
    pub fn configured(&self) -> Arc<AgencyMap> {
        let kept = match self.configured.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        kept.unwrap_or_else(|| self.snapshot())
    }

    /// The set as it is now; later changes do not reach this snapshot.
    pub fn snapshot(&self) -> Arc<AgencyMap> {
        match self.cell.read() {
            Ok(g) => g.clone(),
            // A writer only swaps an `Arc`: a poisoned lock still holds a whole map.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One agency by id (an index lookup, not a scan).
    pub fn get(&self, id: &str) -> Option<Arc<AgencySettings>> {
        self.snapshot().get(id).cloned()
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.snapshot().contains_key(id)
    }

    /// Every agency's id, in order.
    pub fn ids(&self) -> Vec<String> {
        self.snapshot().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Replaces the whole set (the directory's follower, after reading a change).
    pub fn replace(&self, map: AgencyMap) {
        {
            let mut kept = match self.configured.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if kept.is_none() {
                *kept = Some(self.snapshot());
            }
        }
        let map = Arc::new(map);
        match self.cell.write() {
            Ok(mut g) => *g = map,
            Err(poisoned) => *poisoned.into_inner() = map,
        }
    }

    fn map_mut(&mut self) -> &mut AgencyMap {
        let cell = match self.cell.get_mut() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::make_mut(cell)
    }

    /// For building a configuration (and tests) before the hub starts.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut AgencySettings> {
        self.map_mut().get_mut(id).map(Arc::make_mut)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut AgencySettings)> {
        self.map_mut()
            .iter_mut()
            .map(|(id, a)| (id, Arc::make_mut(a)))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut AgencySettings> {
        self.iter_mut().map(|(_, a)| a)
    }

    pub fn insert(&mut self, id: String, agency: AgencySettings) {
        self.map_mut().insert(id, Arc::new(agency));
    }

    pub fn remove(&mut self, id: &str) -> Option<Arc<AgencySettings>> {
        self.map_mut().remove(id)
    }
}

impl Clone for Agencies {
    fn clone(&self) -> Agencies {
        let copy = Agencies::new((*self.snapshot()).clone());
        if let Ok(mut kept) = copy.configured.write() {
            *kept = Some(self.configured());
        }
        let revoked = match self.revoked.read() {
            Ok(g) => (**g).clone(),
            Err(poisoned) => (**poisoned.into_inner()).clone(),
        };
        copy.replace_revoked(revoked);
        copy
    }
}

impl std::fmt::Debug for Agencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl<'de> Deserialize<'de> for Agencies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Agencies, D::Error> {
        let map = BTreeMap::<String, AgencySettings>::deserialize(d)?;
        Ok(Agencies::new(
            map.into_iter().map(|(id, a)| (id, Arc::new(a))).collect(),
        ))
    }
}

impl FromIterator<(String, AgencySettings)> for Agencies {
    fn from_iter<I: IntoIterator<Item = (String, AgencySettings)>>(iter: I) -> Agencies {
        Agencies::new(iter.into_iter().map(|(id, a)| (id, Arc::new(a))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(name: &str) -> AgencySettings {
        AgencySettings {
            agency_type: himaya_record::AgencyType::Health,
            name_ar: name.into(),
            name_en: name.into(),
            services: vec![],
            governorates: vec!["*".into()],
            endpoint: None,
            protocol: crate::Protocol::default(),
            inbound_token: None,
            outbound_token: None,
            login_user: None,
            login_password: None,
            place_codes: BTreeMap::new(),
            poll_interval_ms: None,
            suspended: false,
        }
    }

    #[test]
    fn a_snapshot_keeps_its_moment_and_a_clone_its_own_set() {
        let live: Agencies = [("a".to_string(), agency("a"))].into_iter().collect();
        let before = live.snapshot();
        let copy = live.clone();
        live.replace([("b".to_string(), Arc::new(agency("b")))].into());
        assert!(before.contains_key("a") && !before.contains_key("b"));
        assert!(live.contains_key("b") && !live.contains_key("a"));
        assert!(copy.contains_key("a") && !copy.contains_key("b"));
        assert!(live.configured().contains_key("a") && !live.configured().contains_key("b"));
    }
}
