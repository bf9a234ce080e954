//! `spec.mode`: whether a pool drives its target or only shadows it.

use serde::{Deserialize, Serialize};

/// Whether the operator writes the pool's decisions to its target.
///
/// A shadow pool lets a team compare the operator with the autoscaler it
/// already runs (an HPA, a KEDA ScaledObject) on live traffic before it hands
/// over the target: switching back to `Active` is the whole cut-over.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Mode {
    /// Read, decide, and scale the target (the default).
    #[default]
    Active,
    /// Read, decide and report (status, `WouldScale` Events, the metric
    /// `workerpool_shadow_desired_replicas`), but never write to the target;
    /// another autoscaler may own it meanwhile.
    Shadow,
}

impl Mode {
    /// True when the pool must not write to its target.
    pub fn is_shadow(self) -> bool {
        self == Mode::Shadow
    }

    /// The name as written in the manifest (`Active`, `Shadow`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "Active",
            Mode::Shadow => "Shadow",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn absent_mode_is_active_and_names_round_trip() {
        assert_eq!(Mode::default(), Mode::Active);
        for m in [Mode::Active, Mode::Shadow] {
            let yaml = crate::yaml::to_string(&m).unwrap();
            assert_eq!(yaml.trim(), m.as_str());
            assert_eq!(crate::yaml::from_str::<Mode>(&yaml).unwrap(), m);
        }
        assert!(Mode::Shadow.is_shadow() && !Mode::Active.is_shadow());
        assert!(crate::yaml::from_str::<Mode>("shadow").is_err());
    }
}
