//! The per-worker cache of built connectors: a database client and its pool are made once per
//! config, not once per batch.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::ConnectorError;

/// How many distinct configs a worker keeps built; the oldest is dropped past that, so a
/// worker running many jobs over many files does not keep every file open.
const CAPACITY: usize = 64;

type Key = (TypeId, String);

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Arc<dyn Any + Send + Sync>>,
    order: VecDeque<Key>,
}

/// Built connectors, keyed by their type and serialized config. Shared by every pipeline on a
/// worker. Concurrent first uses of one config build it once.
#[derive(Clone, Default)]
pub(crate) struct ConnectorCache {
    entries: Arc<Mutex<Entries>>,
}

impl ConnectorCache {
    /// Returns the connector built from `config`, building it with `build` on first use. A
    /// failed build is not cached: the next call tries again.
    pub(crate) async fn get_or_build<C, T, F, Fut>(
        &self,
        config: &C,
        build: F,
    ) -> Result<Arc<T>, ConnectorError>
    where
        C: Serialize,
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let json = serde_json::to_string(config).map_err(|e| {
            ConnectorError::config(format!("cannot serialize connector config: {e}"))
        })?;
        let key = (TypeId::of::<T>(), json);
        let cell = self.cell::<T>(key);
        cell.get_or_try_init(|| async { build().await.map(Arc::new) })
            .await
            .cloned()
    }

    fn cell<T: Send + Sync + 'static>(&self, key: Key) -> Arc<OnceCell<Arc<T>>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = entries.map.get(&key)
            && let Ok(cell) = Arc::clone(found).downcast::<OnceCell<Arc<T>>>()
        {
            return cell;
        }
        if entries.order.len() >= CAPACITY
            && let Some(oldest) = entries.order.pop_front()
        {
            entries.map.remove(&oldest);
        }
        let cell = Arc::new(OnceCell::<Arc<T>>::new());
        entries.map.insert(key.clone(), cell.clone());
        entries.order.push_back(key);
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn builds_once_per_config_and_retries_failed_builds() {
        let cache = ConnectorCache::default();
        let builds = AtomicU32::new(0);
        let build = || async {
            builds.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ConnectorError>(String::from("client"))
        };
        let a = cache.get_or_build(&"config-a", build).await.unwrap();
        let b = cache.get_or_build(&"config-a", build).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        cache.get_or_build(&"config-b", build).await.unwrap();
        assert_eq!(builds.load(Ordering::SeqCst), 2);

        let failing = || async { Err::<String, _>(ConnectorError::transient("down")) };
        assert!(cache.get_or_build(&"config-c", failing).await.is_err());
        cache.get_or_build(&"config-c", build).await.unwrap();
        assert_eq!(builds.load(Ordering::SeqCst), 3);
    }
}
