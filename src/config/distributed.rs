//! `[distributed]`: ZeRO stage, c10d backend, collective timeout, planned world size.
use super::{Count, Positive};
use serde::{Deserialize, Serialize};

/// `[distributed]`: how the ranks torchrun launches share the work (a single process ignores it).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistributedCfg {
    #[serde(default)]
    pub zero_stage: ZeroStage,
    #[serde(default)]
    pub backend: Backend,
    /// Seconds a collective (or the rendezvous) may take before the job fails.
    #[serde(default = "d_timeout")]
    pub timeout_s: Positive,
    /// Ranks to plan for in `--dry-run`; a launched job takes torchrun's `WORLD_SIZE`.
    pub world_size: Option<Count>,
}

impl Default for DistributedCfg {
    fn default() -> Self {
        DistributedCfg {
            zero_stage: ZeroStage::Ddp,
            backend: Backend::Auto,
            timeout_s: d_timeout(),
            world_size: None,
        }
    }
}

/// What each rank keeps whole (DeepSpeed's ZeRO stages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum ZeroStage {
    /// 0: every rank holds everything; gradients are all-reduced (DDP).
    #[default]
    Ddp,
    /// 1: optimizer state sharded; gradients reduce-scattered, parameters all-gathered.
    Optimizer,
    /// 2: gradients sharded too, each micro-batch's reduced into its owner's shard.
    Gradients,
}

impl TryFrom<i64> for ZeroStage {
    type Error = String;
    fn try_from(v: i64) -> std::result::Result<Self, String> {
        match v {
            0 => Ok(ZeroStage::Ddp),
            1 => Ok(ZeroStage::Optimizer),
            2 => Ok(ZeroStage::Gradients),
            _ => Err(format!(
                "{v} is not a ZeRO stage this trainer has (0, 1 or 2)"
            )),
        }
    }
}

impl From<ZeroStage> for i64 {
    fn from(s: ZeroStage) -> i64 {
        s as i64
    }
}

/// The c10d backend: NCCL between GPUs, Gloo on CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Auto,
    Nccl,
    Gloo,
}

fn d_timeout() -> Positive {
    Positive(600.0)
}
