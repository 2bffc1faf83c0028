//! The UMEM: one mmap'd area cut into equal frames, registered with the
//! kernel on an AF_XDP socket, and the owned handles ([`Frame`], [`Packet`])
//! through which user space reaches a frame's bytes.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU32, Ordering},
    },
};

use super::{XskError, sys};

/// The kernel puts this much headroom in front of every received packet, in
/// addition to the UMEM's own headroom (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Shape of a UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmemConfig {
    /// Bytes per frame: a power of two from 2048 to the page size (the kernel's
    /// aligned-chunk mode recovers a frame from any address inside it).
    pub frame_size: u32,
    /// Number of frames.
    pub frame_count: u32,
    /// Extra bytes the kernel leaves free in front of each received packet
    /// (after its own [`XDP_PACKET_HEADROOM`]), for outer headers written in place.
    pub headroom: u32,
}

impl Default for UmemConfig {
    fn default() -> Self {
        Self {
            frame_size: 4096,
            frame_count: 4096,
            headroom: 0,
        }
    }
}

/// A UMEM frame owned by user space. Not `Clone`: a frame index has exactly
/// one owner at a time, and moving the `Frame` onto a ring hands it to the
/// kernel. Frames come from [`Umem::new`] and from the RX and completion rings.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    base: u64,
    umem_id: u32,
}

impl Frame {
    /// Offset of the frame's first byte in the UMEM.
    pub fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn umem_id(&self) -> u32 {
        self.umem_id
    }

    /// Rebuilds the owner of the frame containing `addr`, as the kernel hands
    /// it back on a ring.
    pub(crate) fn from_kernel(addr: u64, geometry: Geometry) -> Self {
        Self {
            base: addr & !geometry.frame_mask,
            umem_id: geometry.umem_id,
        }
    }
}

/// A frame holding a packet of `len` bytes starting `offset` bytes into it.
/// RX yields these; TX takes them; rewriting in place keeps the same frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet {
    frame: Frame,
    offset: u32,
    len: u32,
}

impl Packet {
    /// Wraps `frame` as a packet at `offset..offset + len`. Fails when the
    /// range does not fit in a frame of `frame_size` bytes.
    pub fn new(frame: Frame, offset: u32, len: u32, frame_size: u32) -> Result<Self, Frame> {
        match offset.checked_add(len) {
            Some(end) if end <= frame_size => Ok(Self { frame, offset, len }),
            _ => Err(frame),
        }
    }

    pub(crate) fn from_kernel(frame: Frame, offset: u32, len: u32) -> Self {
        Self { frame, offset, len }
    }

    /// Offset of the packet's first byte within its frame.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Packet length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the packet has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame the packet lives in.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// UMEM address of the packet's first byte, as a descriptor carries it.
    pub fn addr(&self) -> u64 {
        self.frame.base + u64::from(self.offset)
    }

    /// Moves the packet window within its frame (to grow headers in front,
    /// or trim). Fails, changing nothing, when it would leave the frame.
    pub fn set_window(&mut self, offset: u32, len: u32, frame_size: u32) -> bool {
        match offset.checked_add(len) {
            Some(end) if end <= frame_size => {
                self.offset = offset;
                self.len = len;
                true
            }
            _ => false,
        }
    }

    /// Gives up the packet, keeping its frame.
    pub fn into_frame(self) -> Frame {
        self.frame
    }
}

/// What a ring needs to turn kernel addresses back into [`Frame`]s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) umem_id: u32,
    pub(crate) frame_mask: u64,
}

static NEXT_UMEM_ID: AtomicU32 = AtomicU32::new(1);

#[derive(Debug)]
struct UmemInner {
    area: NonNull<u8>,
    len: usize,
    config: UmemConfig,
    id: u32,
    /// The AF_XDP socket the UMEM is registered on. The first socket bound
    /// over this UMEM is this one; later ones share it (`XDP_SHARED_UMEM`).
    fd: OwnedFd,
    registration: AtomicU8,
}

/// Lifecycle of the registration socket.
const REGISTRATION_FREE: u8 = 0;
const REGISTRATION_TAKEN: u8 = 1;
const REGISTRATION_FAILED: u8 = 2;

/// Whether the registration socket is still free for the first bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    /// Free: this bind takes it.
    Free,
    /// Taken by an earlier (successful) bind: share it.
    Taken,
    /// The bind that took it failed; the kernel keeps its rings, so it cannot
    /// be bound again.
    Failed,
}

impl Drop for UmemInner {
    fn drop(&mut self) {
        // SAFETY: `area` was returned by mmap with length `len` and no frame
        // borrow can outlive the `Umem` handles (borrows are tied to `&Umem`).
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}

/// A registered UMEM. Cloning is cheap and shares the same memory; sockets
/// keep a clone so the area outlives them.
#[derive(Debug, Clone)]
pub struct Umem {
    inner: Arc<UmemInner>,
}

// SAFETY: the area is plain memory; access to a frame's bytes requires the
// unique `Frame` (or `Packet`) that owns it, borrowed mutably for writes, so
// two threads can never reach the same frame at once through this type.
unsafe impl Send for UmemInner {}
// SAFETY: as for `Send`.
unsafe impl Sync for UmemInner {}

impl Umem {
    /// Maps and registers a UMEM and returns it with all its frames.
    ///
    /// Raise the memlock limit first ([`super::raise_memlock_limit`]) when not
    /// running with `CAP_IPC_LOCK`: the kernel pins the area against it.
    pub fn new(config: UmemConfig) -> Result<(Self, Vec<Frame>), XskError> {
        let page_size = sys::page_size();
        if !config.frame_size.is_power_of_two()
            || config.frame_size < 2048
            || config.frame_size as usize > page_size
        {
            return Err(XskError::InvalidConfig(
                "frame_size must be a power of two between 2048 and the page size",
            ));
        }
        if config.frame_count == 0 {
            return Err(XskError::InvalidConfig("frame_count must be at least 1"));
        }
        if config.headroom + XDP_PACKET_HEADROOM + 64 > config.frame_size {
            return Err(XskError::InvalidConfig(
                "headroom leaves no room for a packet in a frame",
            ));
        }
        let len = config.frame_size as usize * config.frame_count as usize;
        let area = sys::mmap_anonymous(len).map_err(|source| XskError::Syscall {
            call: "mmap(UMEM)",
            source,
        })?;
        // Unmaps the area if registration fails below.
        let guard = MappingGuard { area, len };

        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XskError::from_errno(
                "socket(AF_XDP)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let registration = libc::xdp_umem_reg {
            addr: area.as_ptr() as u64,
            len: len as u64,
            chunk_size: config.frame_size,
            headroom: config.headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::setsockopt(fd.as_fd(), libc::XDP_UMEM_REG, &registration)
            .map_err(|source| XskError::from_errno("setsockopt(XDP_UMEM_REG)", source))?;

        std::mem::forget(guard);
        let id = NEXT_UMEM_ID.fetch_add(1, Ordering::Relaxed);
        let frames = (0..u64::from(config.frame_count))
            .map(|index| Frame {
                base: index * u64::from(config.frame_size),
                umem_id: id,
            })
            .collect();
        let umem = Self {
            inner: Arc::new(UmemInner {
                area,
                len,
                config,
                id,
                fd,
                registration: AtomicU8::new(REGISTRATION_FREE),
            }),
        };
        Ok((umem, frames))
    }

    /// The shape it was created with.
    pub fn config(&self) -> UmemConfig {
        self.inner.config
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.inner.config.frame_size
    }

    /// Where the kernel puts a received packet inside its frame.
    pub fn rx_offset(&self) -> u32 {
        self.inner.config.headroom + XDP_PACKET_HEADROOM
    }

    /// All bytes of `frame`.
    pub fn frame_bytes<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let start = self.frame_start(frame);
        // SAFETY: `start` points at `frame_size` bytes inside the area
        // (`frame_start`); the frame is owned by user space, so the kernel does
        // not write it while the `Frame` exists, and the shared borrow of the
        // unique `Frame` excludes writers through this API.
        unsafe { std::slice::from_raw_parts(start, self.inner.config.frame_size as usize) }
    }

    /// All bytes of `frame`, writable.
    pub fn frame_bytes_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let start = self.frame_start(frame);
        // SAFETY: as in `frame_bytes`; the mutable borrow of the unique `Frame`
        // makes this the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(start, self.inner.config.frame_size as usize) }
    }

    /// The packet's bytes.
    pub fn packet<'a>(&'a self, packet: &'a Packet) -> &'a [u8] {
        let (offset, len) = (packet.offset as usize, packet.len as usize);
        &self.frame_bytes(&packet.frame)[offset..offset + len]
    }

    /// The packet's bytes, writable.
    pub fn packet_mut<'a>(&'a self, packet: &'a mut Packet) -> &'a mut [u8] {
        let (offset, len) = (packet.offset as usize, packet.len as usize);
        &mut self.frame_bytes_mut(&mut packet.frame)[offset..offset + len]
    }

    /// The whole frame a packet lives in, writable (the packet is at
    /// `[packet.offset()..][..packet.len()]`), for in-place work that grows
    /// headers in front of the packet or a tag behind it.
    pub fn packet_frame_mut<'a>(&'a self, packet: &'a mut Packet) -> &'a mut [u8] {
        self.frame_bytes_mut(&mut packet.frame)
    }

    /// The first byte of `frame`, checked to be this UMEM's and in bounds.
    fn frame_start(&self, frame: &Frame) -> *mut u8 {
        assert_eq!(
            frame.umem_id, self.inner.id,
            "frame belongs to a different UMEM"
        );
        let start = frame.base as usize;
        assert!(start + self.inner.config.frame_size as usize <= self.inner.len);
        // SAFETY: `start` is within the mapped area (asserted above).
        unsafe { self.inner.area.as_ptr().add(start) }
    }

    pub(crate) fn geometry(&self) -> Geometry {
        Geometry {
            umem_id: self.inner.id,
            frame_mask: u64::from(self.inner.config.frame_size) - 1,
        }
    }

    /// Takes the registration socket for the first bind, or says why not.
    pub(crate) fn take_registration(&self) -> Registration {
        match self.inner.registration.compare_exchange(
            REGISTRATION_FREE,
            REGISTRATION_TAKEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Registration::Free,
            Err(REGISTRATION_TAKEN) => Registration::Taken,
            Err(_) => Registration::Failed,
        }
    }

    /// Records that the bind that took the registration socket failed.
    pub(crate) fn registration_failed(&self) {
        self.inner
            .registration
            .store(REGISTRATION_FAILED, Ordering::Release);
    }

    pub(crate) fn registration_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    pub(crate) fn registration_raw_fd(&self) -> i32 {
        self.inner.fd.as_raw_fd()
    }
}

struct MappingGuard {
    area: NonNull<u8>,
    len: usize,
}

impl Drop for MappingGuard {
    fn drop(&mut self) {
        // SAFETY: the guard owns this fresh mapping until it is forgotten.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}
