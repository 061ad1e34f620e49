//! Figures that are costly to count and may be a little old, cached per process.

/// A small time-to-live map for figures that are costly to count and may be a little old
/// (closed tips, per-commune counts): a queue page must stay fast on a million tips.
pub struct TtlCache<T> {
    ttl: std::time::Duration,
    map: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, T)>>,
}

impl<T: Clone> TtlCache<T> {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: std::time::Duration) -> Self {
        TtlCache {
            ttl,
            map: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The cached value for `key`, or `load`'s (then cached).
    pub async fn get_or<F, E>(&self, key: String, load: F) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        if let Some((at, v)) = self.map.lock().expect("cache lock").get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(v.clone());
            }
        }
        let v = load.await?;
        let mut map = self.map.lock().expect("cache lock");
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(key, (std::time::Instant::now(), v.clone()));
        Ok(v)
    }

    /// Forgets every entry, so the next read loads afresh.
    pub fn clear(&self) {
        self.map.lock().expect("cache lock").clear();
    }
}

/// The console's caches, shared by every request of a process.
pub struct ConsoleCaches {
    /// Closed tips per queue scope.
    pub closed: TtlCache<i64>,
    /// Open tips per status per queue scope: counting them reads every open tip of a
    /// commune (tens of thousands in a big one), more than the rest of a queue page. A
    /// triage change made through this process clears it (see `tip::audit`); new tips and
    /// other processes' changes show within its few seconds.
    pub open: TtlCache<Vec<(String, i64)>>,
    /// Open and overdue tips per commune of a province.
    pub communes: TtlCache<Vec<(i64, i64, i64)>>,
    /// A commune's accounts (the tip page's names and assignee list): an account change
    /// made through this process clears it; other processes' show within its half minute.
    pub people: TtlCache<Vec<crate::store::AccountRow>>,
}

impl Default for ConsoleCaches {
    fn default() -> Self {
        ConsoleCaches {
            closed: TtlCache::new(std::time::Duration::from_secs(60)),
            open: TtlCache::new(std::time::Duration::from_secs(5)),
            communes: TtlCache::new(std::time::Duration::from_secs(15)),
            people: TtlCache::new(std::time::Duration::from_secs(30)),
        }
    }
}
