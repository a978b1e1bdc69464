//! Training on many processes through torch.distributed's own engine (c10d): the job's shape
//! from torchrun's environment, a Gloo or NCCL group, and the ZeRO sharding of gradients and
//! optimizer state (`zero`). Without torchrun's variables a run is a world of one and no
//! collective is made.
pub mod c10d;
pub mod zero;

use crate::config::{Backend, DistributedCfg};
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tch::{Kind, Tensor};

/// Under torchrun, writes a failed run's error where torchrun reads it
/// (`TORCHELASTIC_ERROR_FILE`), so its summary shows it instead of "To enable traceback see".
pub fn tell_torchrun(e: &anyhow::Error) {
    if let Some(path) = var("TORCHELASTIC_ERROR_FILE") {
        let now = chrono::Utc::now().timestamp();
        let json = serde_json::json!({"message": format!("{e:#}"), "timestamp": now});
        let _ = std::fs::write(path, json.to_string());
    }
}

/// This process's place in the job.
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// The rank on this machine (its GPU index).
    pub local_rank: usize,
    /// Rank 0's process id: it names the checkpoint temp directory all ranks write into.
    pub main_pid: u32,
    group: Option<c10d::Group>,
    /// Where the small tensors of `sum` live: NCCL reduces only GPU tensors.
    device: tch::Device,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str) -> Result<usize> {
    let v = var(name).with_context(|| format!("{name} is not set (launch with torchrun)"))?;
    v.parse()
        .with_context(|| format!("{name}={v} is not a number (torchrun sets it)"))
}

impl World {
    /// A single process.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            main_pid: std::process::id(),
            group: None,
            device: tch::Device::Cpu,
        }
    }

    /// The ranks torchrun describes in `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and
    /// `MASTER_PORT` (a world of one when `WORLD_SIZE` is unset or 1).
    pub fn from_env() -> Result<World> {
        if var("WORLD_SIZE").is_none() {
            return Ok(World::single());
        }
        let (rank, size) = (number("RANK")?, number("WORLD_SIZE")?);
        let local_rank = var("LOCAL_RANK").map_or(Ok(0), |_| number("LOCAL_RANK"))?;
        if rank >= size {
            bail!("RANK={rank} is not below WORLD_SIZE={size}");
        }
        Ok(World {
            rank,
            size,
            local_rank,
            main_pid: 0,
            group: None,
            device: tch::Device::Cpu,
        })
    }

    /// Joins the job's process group (a no-op for a world of one). `cuda`: this rank trains on
    /// a GPU (`Backend::Auto` then means NCCL).
    pub fn join(&mut self, cfg: &DistributedCfg, cuda: bool) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let backend = match (cfg.backend, cuda) {
            (Backend::Nccl, false) => bail!(
                "rank {}: distributed.backend = \"nccl\" needs a GPU, and this rank trains on CPU",
                self.rank
            ),
            (Backend::Gloo, _) | (Backend::Auto, false) => "gloo",
            (Backend::Nccl, true) | (Backend::Auto, true) => "nccl",
        };
        let port: u16 = var("MASTER_PORT")
            .unwrap_or_else(|| "29500".into())
            .parse()
            .context("MASTER_PORT is not a port number")?;
        // Recent torchrun hosts the store itself and says so; its keys live under the attempt.
        let agent = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True");
        let prefix = if agent {
            format!(
                "/worker/attempt_{}/",
                var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into())
            )
        } else {
            String::new()
        };
        let r = c10d::Rendezvous {
            host: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            port,
            server: !agent && self.rank == 0,
            prefix,
            rank: self.rank,
            world: self.size,
            backend,
            device: self.local_rank,
            timeout: Duration::from_secs_f64(cfg.timeout_s.get()),
        };
        self.group = Some(c10d::Group::join(&r)?);
        if backend == "nccl" {
            self.device = tch::Device::Cuda(self.local_rank);
        }
        let mine = if self.is_main() {
            std::process::id()
        } else {
            0
        };
        self.main_pid = self.sum(&[mine as f64])?[0] as u32;
        Ok(())
    }

    /// Every rank's `result` of one shared task: this rank's error, or one naming the ranks that
    /// failed (so no rank waits for a part that will never come).
    pub fn all_ok(&self, result: Result<()>, what: &str) -> Result<()> {
        let mut failed = vec![0.0; self.size];
        failed[self.rank] = result.is_err() as u8 as f64;
        let failed = self.sum(&failed)?;
        result?;
        let bad: Vec<String> = (0..self.size)
            .filter(|&r| failed[r] > 0.0)
            .map(|r| r.to_string())
            .collect();
        if !bad.is_empty() {
            bail!("{what}: rank {} failed (see its error)", bad.join(", "));
        }
        Ok(())
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    pub fn group(&self) -> Option<&c10d::Group> {
        self.group.as_ref()
    }

    /// Sums `values` over ranks (in f64: losses, token counts, squared norms).
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let Some(g) = &self.group else {
            return Ok(values.to_vec());
        };
        let t = Tensor::from_slice(values)
            .to_kind(Kind::Double)
            .to_device(self.device);
        g.all_reduce(&t)?.wait().with_context(|| self.lost())?;
        Ok(crate::host::values(&t))
    }

    /// Whether any rank says `yes` (a signal that reached only some ranks stops them all).
    pub fn any(&self, yes: bool) -> Result<bool> {
        Ok(self.sum(&[yes as u8 as f64])?[0] > 0.0)
    }

    /// Context for a failed collective: which rank saw it, which ranks are gone, what it
    /// usually means. Every rank that sees a collective fail says so in the job's store (which
    /// torchrun's agent keeps up when ranks die); after a short wait the ranks that did not are
    /// the ones lost (dead or hung).
    pub fn lost(&self) -> String {
        let mut gone = String::new();
        if let Some(g) = &self.group {
            let key = |r: usize| format!("failed/{r}");
            if g.set(&key(self.rank), "1").is_ok() {
                std::thread::sleep(Duration::from_secs(2));
                let lost: Vec<String> = (0..self.size)
                    .filter(|&r| !matches!(g.get(&key(r)), Ok(Some(_))))
                    .map(|r| r.to_string())
                    .collect();
                if !lost.is_empty() {
                    gone = format!("; rank {} stopped answering", lost.join(", "));
                }
            }
        }
        format!(
            "rank {} of {}: a collective failed (another rank died, hung past distributed.timeout_s, or was stopped){gone}; the job cannot go on",
            self.rank, self.size
        )
    }
}
