//! `--device auto|cpu|cuda:N`, what a device promises about repeatability, and what a
//! run's provenance records about it (name; on CUDA the driver's and libraries' versions).

use crate::store::DeviceDetails;
use anyhow::bail;
use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`, expected auto, cpu or cuda:N")),
        }
    }
}

/// `--devices`: a comma-separated list of devices (`cpu,cpu`, `cuda:0,cuda:1`), or
/// `cuda:all` for every GPU that answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceList {
    Listed(Vec<DeviceChoice>),
    AllCuda,
}

impl std::str::FromStr for DeviceList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "cuda:all" {
            return Ok(Self::AllCuda);
        }
        let list = s
            .split(',')
            .map(|d| match d.trim().parse()? {
                DeviceChoice::Auto => Err("`auto` cannot be one of --devices".to_string()),
                c => Ok(c),
            })
            .collect::<Result<Vec<_>, String>>()?;
        if list.is_empty() {
            return Err("--devices needs at least one device".into());
        }
        Ok(Self::Listed(list))
    }
}

/// Opens every device of the list, each once per listing (`cpu,cpu` is two slots of the
/// CPU), with the name each is shown by.
pub fn open_all(list: &DeviceList) -> anyhow::Result<Vec<(String, Device)>> {
    match list {
        DeviceList::Listed(l) => l
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let mut name = match c {
                    DeviceChoice::Cuda(n) => format!("cuda:{n}"),
                    _ => "cpu".into(),
                };
                // The same device twice: its slots are told apart by position.
                if l.iter().filter(|&&x| x == c).count() > 1 {
                    name = format!("{name} (slot {})", i + 1);
                }
                Ok((name, open(c)?))
            })
            .collect(),
        DeviceList::AllCuda => {
            let mut out = Vec::new();
            if candle_core::utils::cuda_is_available() {
                while let Ok(d) = Device::new_cuda(out.len()) {
                    out.push((format!("cuda:{}", out.len()), d));
                }
            }
            if out.is_empty() {
                bail!("--devices cuda:all: no GPU answers (or this lecal was built without CUDA)");
            }
            Ok(out)
        }
    }
}

/// Opens the device. `auto` takes CUDA device 0 when lecal was built with CUDA and a GPU
/// answers, and otherwise falls back to the CPU, saying so (candle's
/// `Device::cuda_if_available` fails instead of falling back).
pub fn open(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device cuda:{n}: this lecal was built without CUDA; rebuild with `cargo build --release --features cuda`");
            }
            Device::new_cuda(n).map_err(|e| {
                anyhow::anyhow!("--device cuda:{n}: cannot open the GPU: {}", first_line(&e))
            })
        }
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                match Device::new_cuda(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => eprintln!(
                        "note: no usable GPU ({}); running on the CPU",
                        first_line(&e)
                    ),
                }
            }
            Ok(Device::Cpu)
        }
    }
}

/// candle's errors carry a backtrace after the message when RUST_BACKTRACE is set.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

pub fn describe(d: &Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

/// CPU runs are bitwise repeatable; GPU kernels (atomics, algorithm choice) may not be.
pub fn bitwise_repeatable(d: &Device) -> bool {
    matches!(d, Device::Cpu)
}

/// The device's name and, on the CPU, its kernel level, on CUDA the versions a run's
/// provenance records. Nothing fails here: what cannot be read is left out.
pub fn details(d: &Device) -> DeviceDetails {
    match d {
        Device::Cpu => DeviceDetails {
            name: cpu_name(),
            kernel_level: Some(crate::model::CpuLevel::detect().to_string()),
            ..DeviceDetails::default()
        },
        #[cfg(feature = "cuda")]
        Device::Cuda(c) => cuda::details(c),
        _ => DeviceDetails::default(),
    }
}

/// The processor's model name (Linux: `/proc/cpuinfo`).
fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
        .filter(|n| !n.is_empty())
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::DeviceDetails;
    use candle_core::cuda::cudarc;

    /// cudarc links the driver, NVRTC and (with `cudnn`) cuDNN dynamically: the binary
    /// does not start without them, so these calls cannot miss a library.
    pub fn details(c: &candle_core::CudaDevice) -> DeviceDetails {
        let mut driver: std::ffi::c_int = 0;
        // SAFETY: cuDriverGetVersion writes one int through the pointer it is given.
        let driver = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver) }
            .result()
            .ok()
            .map(|_| format!("{}.{}", driver / 1000, driver % 1000 / 10));
        let (mut major, mut minor): (std::ffi::c_int, std::ffi::c_int) = (0, 0);
        // SAFETY: nvrtcVersion writes one int through each pointer it is given.
        let runtime = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .ok()
            .map(|_| format!("{major}.{minor}"));
        let toolkit = Some(env!("LECAL_CUDA_TOOLKIT").to_string()).filter(|t| !t.is_empty());
        let context = c.cuda_stream().context().clone();
        DeviceDetails {
            name: context.name().ok(),
            compute_capability: (context.compute_capability().ok())
                .map(|(major, minor)| format!("{major}.{minor}")),
            cuda_driver: driver,
            cuda_runtime: runtime,
            cuda_toolkit: toolkit,
            cudnn: cudnn(),
            ..DeviceDetails::default()
        }
    }

    /// cuDNN's version as major.minor.patch (9.x encodes it as M*10000 + m*100 + p, 8.x as
    /// M*1000 + m*100 + p).
    #[cfg(feature = "cudnn")]
    fn cudnn() -> Option<String> {
        let v = cudarc::cudnn::result::get_version();
        let major_unit = if v >= 90000 { 10000 } else { 1000 };
        Some(format!(
            "{}.{}.{}",
            v / major_unit,
            v % major_unit / 100,
            v % 100
        ))
    }

    #[cfg(not(feature = "cudnn"))]
    fn cudnn() -> Option<String> {
        None
    }
}
