//! Open TCP connections and the most ever open at once: a slow server
//! makes a client open more connections, and a benchmark wants that count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections open now and the most open at once since start (or since
/// the last [`ConnectionGauge::reset_peak`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connections {
    pub open: usize,
    pub peak: usize,
}

/// Counts accepted connections until they close.
#[derive(Debug, Default)]
pub struct ConnectionGauge {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl ConnectionGauge {
    /// Counts one accepted connection; it stays counted until the guard drops.
    pub fn opened(self: &Arc<Self>) -> OpenConnection {
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        OpenConnection(self.clone())
    }

    pub fn get(&self) -> Connections {
        Connections {
            open: self.open.load(Ordering::SeqCst),
            peak: self.peak.load(Ordering::SeqCst),
        }
    }

    /// Starts a new peak from the connections open now.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.open.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// One open connection; dropping it (when the connection's task ends)
/// uncounts it.
pub struct OpenConnection(Arc<ConnectionGauge>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn peak_survives_closes_until_reset() {
        let gauge = Arc::new(ConnectionGauge::default());
        let a = gauge.opened();
        let b = gauge.opened();
        drop(a);
        assert_eq!(gauge.get(), Connections { open: 1, peak: 2 });
        gauge.reset_peak();
        assert_eq!(gauge.get(), Connections { open: 1, peak: 1 });
        drop(b);
        assert_eq!(gauge.get(), Connections { open: 0, peak: 1 });
    }
}
