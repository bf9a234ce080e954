//! Step 1 of the decision: what each trigger alone would want.

/// Replicas one trigger proposes for `value`, mirroring HPA's
/// `GetExternalPerPodMetricReplicas` (AverageValue target): `ceil(value /
/// target)`, or the current count when the usage ratio
/// `value / (target * current)` is within `tolerance` of 1. The tolerance
/// does not apply at 0 replicas, where the ratio is undefined.
pub fn propose(value: f64, target_per_replica: f64, current: i32, tolerance: f64) -> (i32, bool) {
    if current > 0 {
        let ratio = value / (target_per_replica * f64::from(current));
        if (ratio - 1.0).abs() <= tolerance {
            return (current, true);
        }
    }
    let wanted = (value / target_per_replica).ceil();
    // Negative values (a Prometheus query can return one) want nothing;
    // `as` saturates at i32::MAX for huge ones.
    let proposed = if wanted.is_nan() || wanted <= 0.0 {
        0
    } else {
        wanted as i32
    };
    (proposed, false)
}

#[cfg(test)]
mod tests {
    use super::propose;

    #[test]
    fn ceil_of_value_over_target() {
        assert_eq!(propose(137.0, 20.0, 4, 0.1), (7, false));
        assert_eq!(propose(140.0, 20.0, 4, 0.1), (7, false));
        assert_eq!(propose(0.0, 20.0, 4, 0.1), (0, false));
    }

    #[test]
    fn within_tolerance_keeps_current() {
        // 84 / (20 * 4) = 1.05 -> within 0.1
        assert_eq!(propose(84.0, 20.0, 4, 0.1), (4, true));
        // 90 / 80 = 1.125 -> outside
        assert_eq!(propose(90.0, 20.0, 4, 0.1), (5, false));
    }

    #[test]
    fn tolerance_skipped_at_zero_replicas() {
        assert_eq!(propose(1.0, 20.0, 0, 0.1), (1, false));
    }

    #[test]
    fn negative_and_huge_values_are_bounded() {
        assert_eq!(propose(-5.0, 1.0, 2, 0.1), (0, false));
        assert_eq!(propose(1e300, 1.0, 2, 0.1), (i32::MAX, false));
    }
}
