//! Safe wrappers over the c10d shim (c10d.cpp): a process group of libtorch's own Gloo or NCCL
//! backend, joined through a TCPStore, and its collectives on tch tensors. Every wait is bounded
//! by the group's timeout; an error names the collective and what c10d reported (a peer that
//! closed its connection is a rank that died).
use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, CStr, CString};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}
#[repr(C)]
struct RawWork {
    _private: [u8; 0],
}

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn qs_group_new(
        host: *const c_char,
        port: c_int,
        server: c_int,
        prefix: *const c_char,
        rank: c_int,
        world: c_int,
        backend: *const c_char,
        device: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn qs_group_free(g: *mut RawGroup);
    fn qs_all_reduce(g: *mut RawGroup, t: *const C_tensor, out: *mut *mut RawWork) -> *mut c_char;
    fn qs_reduce_scatter(
        g: *mut RawGroup,
        out_t: *const C_tensor,
        input: *const C_tensor,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    fn qs_all_gather(
        g: *mut RawGroup,
        out_t: *const C_tensor,
        input: *const C_tensor,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    fn qs_broadcast(
        g: *mut RawGroup,
        t: *const C_tensor,
        root: c_int,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    fn qs_work_wait(w: *mut RawWork, timeout_ms: i64) -> *mut c_char;
    fn qs_store_set(g: *mut RawGroup, key: *const c_char, value: *const c_char) -> *mut c_char;
    fn qs_store_get(g: *mut RawGroup, key: *const c_char, value: *mut *mut c_char) -> *mut c_char;
    fn qs_clear_grad(t: *const C_tensor);
    fn qs_set_grad(t: *const C_tensor, g: *const C_tensor);
}

/// Turns the shim's error string (malloc'd, or null) into a Result.
fn check(err: *mut c_char, what: &str) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: the shim returns a NUL-terminated malloc'd string; we own it from here.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { libc::free(err.cast()) };
    let first = msg.lines().next().unwrap_or("").trim().to_string();
    bail!("{what}: {first}")
}

/// Where and how a group meets (from torchrun's environment, `dist::World::from_env`).
pub struct Rendezvous {
    pub host: String,
    pub port: u16,
    /// This process hosts the TCPStore (rank 0, unless torchrun's agent hosts it).
    pub server: bool,
    pub prefix: String,
    pub rank: usize,
    pub world: usize,
    pub backend: &'static str,
    pub device: usize,
    pub timeout: Duration,
}

pub struct Group {
    raw: *mut RawGroup,
    timeout: Duration,
}

// SAFETY: the backend is used from one thread at a time (the trainer's), as c10d allows.
unsafe impl Send for Group {}

/// A collective in flight; `wait` blocks until it completes (or the timeout passes).
#[must_use = "a collective must be waited for before its tensors are read"]
pub struct Work {
    raw: *mut RawWork,
    what: &'static str,
    timeout: Duration,
}

impl Work {
    pub fn wait(mut self) -> Result<()> {
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        // SAFETY: `raw` came from the shim and is consumed (freed) by this call.
        check(
            unsafe { qs_work_wait(raw, self.timeout.as_millis() as i64) },
            self.what,
        )
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            // SAFETY: as in `wait`; an unwaited collective is waited for before it is freed.
            let _ = check(unsafe { qs_work_wait(self.raw, 0) }, self.what);
        }
    }
}

impl Group {
    pub fn join(r: &Rendezvous) -> Result<Group> {
        let host = CString::new(r.host.as_str())?;
        let prefix = CString::new(r.prefix.as_str())?;
        let backend = CString::new(r.backend)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: the strings outlive the call; `raw` is set only on success.
        let err = unsafe {
            qs_group_new(
                host.as_ptr(),
                r.port as c_int,
                r.server as c_int,
                prefix.as_ptr(),
                r.rank as c_int,
                r.world as c_int,
                backend.as_ptr(),
                r.device as c_int,
                r.timeout.as_millis() as i64,
                &mut raw,
            )
        };
        check(
            err,
            &format!(
                "rank {} of {}: cannot join the {} group at {}:{}",
                r.rank, r.world, r.backend, r.host, r.port
            ),
        )?;
        Ok(Group {
            raw,
            timeout: r.timeout,
        })
    }

    fn work(&self, err: *mut c_char, raw: *mut RawWork, what: &'static str) -> Result<Work> {
        check(err, what)?;
        Ok(Work {
            raw,
            what,
            timeout: self.timeout,
        })
    }

    /// Sums `t` over all ranks, in place.
    pub fn all_reduce(&self, t: &Tensor) -> Result<Work> {
        let mut w = std::ptr::null_mut();
        // SAFETY: `t` is a live tensor; c10d keeps its own reference while the work runs.
        let err = unsafe { qs_all_reduce(self.raw, t.as_ptr(), &mut w) };
        self.work(err, w, "all_reduce")
    }

    /// `input` is `world` equal chunks; `out` receives the sum of every rank's chunk `rank`.
    pub fn reduce_scatter(&self, out: &Tensor, input: &Tensor) -> Result<Work> {
        let mut w = std::ptr::null_mut();
        // SAFETY: as in `all_reduce`.
        let err = unsafe { qs_reduce_scatter(self.raw, out.as_ptr(), input.as_ptr(), &mut w) };
        self.work(err, w, "reduce_scatter")
    }

    /// `out` (`world` chunks) receives every rank's `input`, in rank order.
    pub fn all_gather(&self, out: &Tensor, input: &Tensor) -> Result<Work> {
        let mut w = std::ptr::null_mut();
        // SAFETY: as in `all_reduce`.
        let err = unsafe { qs_all_gather(self.raw, out.as_ptr(), input.as_ptr(), &mut w) };
        self.work(err, w, "all_gather")
    }

    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<Work> {
        let mut w = std::ptr::null_mut();
        // SAFETY: as in `all_reduce`.
        let err = unsafe { qs_broadcast(self.raw, t.as_ptr(), root as c_int, &mut w) };
        self.work(err, w, "broadcast")
    }

    /// Sets `key` in the job's store (seen by every rank).
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (CString::new(key)?, CString::new(value)?);
        // SAFETY: the strings outlive the call.
        check(
            unsafe { qs_store_set(self.raw, k.as_ptr(), v.as_ptr()) },
            "store set",
        )
    }

    /// `key`'s value in the job's store, if some rank set it.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let k = CString::new(key)?;
        let mut v = std::ptr::null_mut();
        // SAFETY: `v` is set to a malloc'd string or left null.
        check(
            unsafe { qs_store_get(self.raw, k.as_ptr(), &mut v) },
            "store get",
        )?;
        if v.is_null() {
            return Ok(None);
        }
        // SAFETY: as in `check`: a NUL-terminated malloc'd string we now own.
        let s = unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned();
        unsafe { libc::free(v.cast()) };
        Ok(Some(s))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `qs_group_new` and is freed once.
        unsafe { qs_group_free(self.raw) }
    }
}

/// Frees `t`'s gradient (autograd allocates a fresh one at the next backward).
pub fn clear_grad(t: &Tensor) {
    // SAFETY: `t` is a live tensor.
    unsafe { qs_clear_grad(t.as_ptr()) }
}

/// Sets `t`'s gradient to `g`.
pub fn set_grad(t: &Tensor, g: &Tensor) {
    // SAFETY: both are live tensors; the gradient slot takes its own reference to `g`.
    unsafe { qs_set_grad(t.as_ptr(), g.as_ptr()) }
}
