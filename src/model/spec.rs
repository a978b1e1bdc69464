//! The closed choices a model is built with: its dtype and its device, parsed once (from a run
//! config or a flag) into enums, so nothing downstream compares strings.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use tch::{Device, Kind};

/// Storage and compute dtype of the base weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[serde(alias = "bfloat16")]
    Bf16,
    #[serde(alias = "float32", alias = "f32")]
    Fp32,
}

impl DType {
    pub fn kind(self) -> Kind {
        match self {
            DType::Bf16 => Kind::BFloat16,
            DType::Fp32 => Kind::Float,
        }
    }

    /// The dtype config.json names (`torch_dtype` or `dtype`), e.g. `bfloat16`.
    pub fn from_hf(s: &str) -> Result<DType> {
        match s {
            "bfloat16" | "bf16" => Ok(DType::Bf16),
            "float32" | "fp32" | "f32" => Ok(DType::Fp32),
            other => bail!("dtype `{other}` is not supported: use bf16 or fp32"),
        }
    }
}

impl std::str::FromStr for DType {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<DType> {
        DType::from_hf(s)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::Bf16 => "bf16",
            DType::Fp32 => "fp32",
        })
    }
}

/// How the decoder's linear weights are stored: as they are, or frozen in bitsandbytes' NF4
/// (QLoRA's base: blocks of 64, double-quantized absmax, compute in the model dtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    #[default]
    None,
    Nf4,
}

impl std::str::FromStr for Quantization {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Quantization> {
        match s {
            "none" => Ok(Quantization::None),
            "nf4" => Ok(Quantization::Nf4),
            other => bail!("quantization `{other}` is not supported: use none or nf4"),
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantization::None => "none",
            Quantization::Nf4 => "nf4",
        })
    }
}

/// Where the model runs: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, `cuda`
/// (GPU 0), `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// The device, checked to exist here.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceSpec::Auto => Ok(Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                let n = if tch::Cuda::is_available() {
                    tch::Cuda::device_count() as usize
                } else {
                    0
                };
                if n == 0 {
                    bail!(
                        "device `{self}` requested but libtorch sees no CUDA GPU: use cpu or auto"
                    );
                }
                if i >= n {
                    bail!("device `{self}` requested but libtorch sees {n} CUDA GPU(s): use cuda:0 to cuda:{}", n - 1);
                }
                Ok(Device::Cuda(i))
            }
        }
    }

    /// The device this spec names, present here or not (the `--dry-run` budget is for the
    /// configured device).
    pub fn planned(self) -> Device {
        match self {
            DeviceSpec::Auto => Device::cuda_if_available(),
            DeviceSpec::Cpu => Device::Cpu,
            DeviceSpec::Cuda(i) => Device::Cuda(i),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<DeviceSpec> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(DeviceSpec::Cuda(i)),
                _ => bail!("unknown device `{s}`: use auto, cpu, cuda or cuda:N"),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<DeviceSpec> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The `generation_config.json` the Qwen3 releases ship (Qwen's recommended thinking-mode
/// sampling: greedy decoding makes reasoning models repeat themselves). A model saved from a
/// `random:<preset>` gets it, so it generates as a Qwen3 checkpoint does.
pub const QWEN3_GENERATION_CONFIG: &str = r#"{
  "bos_token_id": 151643,
  "do_sample": true,
  "eos_token_id": [151645, 151643],
  "pad_token_id": 151643,
  "temperature": 0.6,
  "top_k": 20,
  "top_p": 0.95
}
"#;
