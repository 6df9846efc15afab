//! The per-worker cache of built connectors: a database client and its pool are made once per
//! config, not once per batch.
//!
//! Concurrent first uses of one config share one build. A failed build is not kept: every
//! activity that was waiting on it gets its error at once (so eight activities whose sink is
//! unreachable fail together and are retried in parallel, instead of queueing one 5-second
//! connect behind another), and the next use builds again.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Serialize;

use crate::error::ConnectorError;

/// How many distinct configs a worker keeps built; the oldest is dropped past that, so a
/// worker running many jobs over many files does not keep every file open.
const CAPACITY: usize = 64;

type Key = (TypeId, String);
type Built = Arc<dyn Any + Send + Sync>;
type Build = Shared<BoxFuture<'static, Result<Built, ConnectorError>>>;

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Build>,
    order: VecDeque<Key>,
}

/// Built connectors, keyed by their type and serialized config. Shared by every pipeline on a
/// worker.
#[derive(Clone, Default)]
pub(crate) struct ConnectorCache {
    entries: Arc<Mutex<Entries>>,
}

impl ConnectorCache {
    /// Returns the connector built from `config`, building it with `build` on first use.
    pub(crate) async fn get_or_build<C, T, Fut>(
        &self,
        config: &C,
        build: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, ConnectorError>
    where
        C: Serialize,
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, ConnectorError>> + Send + 'static,
    {
        let key = key::<C, T>(config)?;
        let shared = {
            let mut entries = self.lock();
            match entries.map.get(&key) {
                Some(found) => found.clone(),
                None => {
                    let fut = build();
                    // A build that panics becomes a configuration error (and is evicted
                    // below like any failed build), so later users do not panic too.
                    let type_name = std::any::type_name::<T>();
                    let shared = async move {
                        match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                            Ok(built) => built.map(|t| Arc::new(t) as Built),
                            Err(panic) => Err(ConnectorError::config(format!(
                                "building `{type_name}` panicked: {}",
                                panic_message(&*panic)
                            ))),
                        }
                    }
                    .boxed()
                    .shared();
                    entries.insert(key.clone(), shared.clone());
                    shared
                }
            }
        };
        match shared.clone().await {
            Ok(built) => built.downcast::<T>().map_err(|_| {
                ConnectorError::config("connector cache holds another type under this config")
            }),
            Err(e) => {
                // Forget the failed build (unless a newer one replaced it already).
                let mut entries = self.lock();
                if entries.map.get(&key).is_some_and(|b| b.ptr_eq(&shared)) {
                    entries.remove(&key);
                }
                Err(e)
            }
        }
    }

    /// Drops `built`, the connector built from `config`, so the next use builds it again
    /// (after its input changed, or after it failed). A newer connector another activity
    /// built in the meantime is kept.
    pub(crate) fn evict<C: Serialize, T: Send + Sync + 'static>(&self, config: &C, built: &Arc<T>) {
        let Ok(key) = key::<C, T>(config) else {
            return;
        };
        let mut entries = self.lock();
        let same = entries
            .map
            .get(&key)
            .and_then(|b| b.peek().cloned())
            .is_some_and(|cached| match cached {
                Ok(cached) => std::ptr::eq(
                    Arc::as_ptr(&cached).cast::<()>(),
                    Arc::as_ptr(built).cast::<()>(),
                ),
                Err(_) => true,
            });
        if same {
            entries.remove(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Entries {
    fn insert(&mut self, key: Key, build: Build) {
        if self.order.len() >= CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.map.insert(key.clone(), build);
        self.order.push_back(key);
    }

    fn remove(&mut self, key: &Key) {
        self.map.remove(key);
        self.order.retain(|k| k != key);
    }
}

/// The text of a panic's payload, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

fn key<C: Serialize, T: 'static>(config: &C) -> Result<Key, ConnectorError> {
    let json = serde_json::to_string(config)
        .map_err(|e| ConnectorError::config(format!("cannot serialize connector config: {e}")))?;
    Ok((TypeId::of::<T>(), json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_build_that_panics_is_a_config_error_and_is_built_again() {
        let cache = ConnectorCache::default();
        let panics = || async {
            if true {
                panic!("no client for you");
            }
            Ok::<String, ConnectorError>(String::new())
        };
        for _ in 0..2 {
            let e = cache.get_or_build(&"config-p", panics).await.unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Config);
            assert!(e.to_string().contains("no client for you"), "{e}");
        }
        let fine = || async { Ok::<_, ConnectorError>(String::from("client")) };
        assert_eq!(
            *cache.get_or_build(&"config-p", fine).await.unwrap(),
            "client"
        );
    }

    #[tokio::test]
    async fn builds_once_per_config_and_retries_failed_builds() {
        let cache = ConnectorCache::default();
        let builds = Arc::new(AtomicU32::new(0));
        let build = || {
            let builds = builds.clone();
            async move {
                builds.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ConnectorError>(String::from("client"))
            }
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

        cache.evict(&"config-a", &a);
        let c = cache.get_or_build(&"config-a", build).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "an evicted config is built again");
        cache.evict(&"config-a", &a);
        let d = cache.get_or_build(&"config-a", build).await.unwrap();
        assert!(
            Arc::ptr_eq(&c, &d),
            "evicting an older connector keeps the newer one"
        );
    }

    #[tokio::test]
    async fn concurrent_users_of_a_failing_build_fail_together() {
        let cache = ConnectorCache::default();
        let builds = Arc::new(AtomicU32::new(0));
        let slow_failure = || {
            let builds = builds.clone();
            async move {
                builds.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err::<String, _>(ConnectorError::transient("connection refused"))
            }
        };
        let started = Instant::now();
        let results =
            futures::future::join_all((0..8).map(|_| cache.get_or_build(&"sink", slow_failure)))
                .await;
        assert!(results.iter().all(Result::is_err));
        assert_eq!(builds.load(Ordering::SeqCst), 1, "one build shared by all");
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "failures are not serialised: {:?}",
            started.elapsed()
        );
    }
}
