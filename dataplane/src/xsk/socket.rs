//! An AF_XDP socket bound to one queue of one interface, with its four rings.

use std::{
    io, mem,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    time::Duration,
};

use super::{
    XskError,
    ring::{ConsumerCursor, ProducerCursor, RingPointers},
    rings::{CompletionRing, FillRing, RxRing, TxRing, XdpDesc},
    sys::{self, Mapping},
    umem::{Registration, Umem},
};

/// How to bind: what the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Copy mode: works on every driver, packets are copied into the UMEM.
    Copy,
    /// Zero-copy: the driver DMAs into the UMEM; fails where unsupported.
    ZeroCopy,
    /// Zero-copy where the driver allows, copy otherwise (logged).
    #[default]
    Auto,
}

/// How a socket ended up bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundMode {
    /// Copy mode.
    Copy,
    /// Zero-copy mode.
    ZeroCopy,
}

/// Where and how to bind a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketConfig {
    /// Interface index, in the network namespace of the calling thread.
    pub if_index: u32,
    /// RX/TX queue of the interface.
    pub queue: u32,
    /// Descriptors in the RX ring (power of two).
    pub rx_size: u32,
    /// Descriptors in the TX ring (power of two).
    pub tx_size: u32,
    /// Descriptors in the fill ring (power of two).
    pub fill_size: u32,
    /// Descriptors in the completion ring (power of two).
    pub completion_size: u32,
    /// Copy, zero-copy, or try zero-copy first. Ignored for sockets sharing
    /// a UMEM already bound: those inherit the first socket's mode.
    pub bind_mode: BindMode,
    /// Ask the kernel to flag when it needs a syscall to make progress, so
    /// a busy worker makes none otherwise.
    pub need_wakeup: bool,
}

impl SocketConfig {
    /// Queue `queue` of `if_index`, 2048-entry rings, zero-copy where
    /// possible, need_wakeup on.
    pub fn new(if_index: u32, queue: u32) -> Self {
        Self {
            if_index,
            queue,
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            completion_size: 2048,
            bind_mode: BindMode::Auto,
            need_wakeup: true,
        }
    }
}

/// Kernel counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statistics {
    /// Packets dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    /// Packets dropped because of invalid descriptors.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel rejected.
    pub tx_invalid_descs: u64,
    /// Packets dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

#[derive(Debug)]
enum SocketFd {
    /// The UMEM's registration socket (the first socket bound on it).
    Registration,
    /// A socket of its own, sharing the UMEM.
    Own(OwnedFd),
}

/// An AF_XDP socket bound to one interface queue.
///
/// The rings are public fields so a worker can borrow them independently;
/// the socket itself is only needed for wakeups, kicks and statistics.
#[derive(Debug)]
pub struct XskSocket {
    /// Frames for the kernel to receive into.
    pub fill: FillRing,
    /// Received packets.
    pub rx: RxRing,
    /// Packets to send.
    pub tx: TxRing,
    /// Frames the kernel has sent.
    pub completion: CompletionRing,
    fd: SocketFd,
    umem: Umem,
    mode: BoundMode,
    if_index: u32,
    queue: u32,
}

const XDP_PACKET_DESC_SIZE: usize = mem::size_of::<XdpDesc>();
const XDP_ADDR_SIZE: usize = mem::size_of::<u64>();

impl XskSocket {
    /// Creates a socket over `umem` and binds it to `config.queue` of
    /// `config.if_index` (resolved in the calling thread's network namespace).
    ///
    /// The first socket bound on a UMEM registers it; later ones share it
    /// (`XDP_SHARED_UMEM`) with fill and completion rings of their own, so the
    /// WAN and LAN sockets of a queue can pass frames between them without a
    /// copy. Sharing one (interface, queue) between two sockets is not supported.
    ///
    /// Bind the sockets of one UMEM from one thread, the first one first. If
    /// the first bind fails, the UMEM cannot be registered again: create a
    /// new one (the kernel keeps the rings set on its registration socket).
    pub fn bind(umem: &Umem, config: &SocketConfig) -> Result<Self, XskError> {
        match umem.take_registration() {
            Registration::Free => Self::bind_inner(umem, config, false).inspect_err(|_| {
                umem.registration_failed();
            }),
            Registration::Taken => Self::bind_inner(umem, config, true),
            Registration::Failed => Err(XskError::UmemUnusable),
        }
    }

    fn bind_inner(umem: &Umem, config: &SocketConfig, shared: bool) -> Result<Self, XskError> {
        for (size, what) in [
            (config.rx_size, "rx_size"),
            (config.tx_size, "tx_size"),
            (config.fill_size, "fill_size"),
            (config.completion_size, "completion_size"),
        ] {
            if !size.is_power_of_two() {
                return Err(XskError::InvalidRingSize { ring: what, size });
            }
        }
        let fd_kind = if shared {
            // SAFETY: plain socket(2) call; the result is checked before use.
            let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if raw < 0 {
                return Err(XskError::from_errno(
                    "socket(AF_XDP)",
                    io::Error::last_os_error(),
                ));
            }
            // SAFETY: `raw` is a fresh descriptor nothing else owns.
            SocketFd::Own(unsafe { OwnedFd::from_raw_fd(raw) })
        } else {
            SocketFd::Registration
        };
        let fd = match &fd_kind {
            SocketFd::Registration => umem.registration_fd(),
            SocketFd::Own(own) => own.as_fd(),
        };

        let set_size = |option, size: u32, call| {
            sys::setsockopt(fd, option, &size).map_err(|e| XskError::from_errno(call, e))
        };
        set_size(
            libc::XDP_UMEM_FILL_RING,
            config.fill_size,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        set_size(
            libc::XDP_UMEM_COMPLETION_RING,
            config.completion_size,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        set_size(libc::XDP_RX_RING, config.rx_size, "setsockopt(XDP_RX_RING)")?;
        set_size(libc::XDP_TX_RING, config.tx_size, "setsockopt(XDP_TX_RING)")?;

        let (offsets, len) = sys::getsockopt::<libc::xdp_mmap_offsets>(fd, libc::XDP_MMAP_OFFSETS)
            .map_err(|e| XskError::from_errno("getsockopt(XDP_MMAP_OFFSETS)", e))?;
        if len != mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(XskError::KernelTooOld(
                "XDP_MMAP_OFFSETS lacks ring flags (need_wakeup needs Linux 5.4+)",
            ));
        }

        let geometry = umem.geometry();
        let (fill_ptrs, fill_map) = map_ring::<u64>(
            fd,
            &offsets.fr,
            config.fill_size,
            XDP_ADDR_SIZE,
            libc::XDP_UMEM_PGOFF_FILL_RING,
        )?;
        let (comp_ptrs, comp_map) = map_ring::<u64>(
            fd,
            &offsets.cr,
            config.completion_size,
            XDP_ADDR_SIZE,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )?;
        let (rx_ptrs, rx_map) = map_ring::<XdpDesc>(
            fd,
            &offsets.rx,
            config.rx_size,
            XDP_PACKET_DESC_SIZE,
            libc::XDP_PGOFF_RX_RING as u64,
        )?;
        let (tx_ptrs, tx_map) = map_ring::<XdpDesc>(
            fd,
            &offsets.tx,
            config.tx_size,
            XDP_PACKET_DESC_SIZE,
            libc::XDP_PGOFF_TX_RING as u64,
        )?;
        // SAFETY (for the four cursors): each mapping is a ring of the given
        // size that the ring object below keeps mapped, and this socket is
        // its only user-space producer/consumer.
        let fill = FillRing::new(
            // SAFETY: see above.
            unsafe { ProducerCursor::new(fill_ptrs) },
            geometry,
            Some(fill_map),
        );
        let completion = CompletionRing::new(
            // SAFETY: see above.
            unsafe { ConsumerCursor::new(comp_ptrs) },
            geometry,
            Some(comp_map),
        );
        // SAFETY: see above.
        let rx = RxRing::new(
            unsafe { ConsumerCursor::new(rx_ptrs) },
            geometry,
            Some(rx_map),
        );
        // SAFETY: see above.
        let tx = TxRing::new(
            unsafe { ProducerCursor::new(tx_ptrs) },
            geometry,
            Some(tx_map),
        );

        let bind = |flags: u16| -> io::Result<()> {
            let address = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags,
                sxdp_ifindex: config.if_index,
                sxdp_queue_id: config.queue,
                sxdp_shared_umem_fd: if shared {
                    umem.registration_raw_fd() as u32
                } else {
                    0
                },
            };
            // SAFETY: `address` is a valid sockaddr_xdp for the length given.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&address as *const libc::sockaddr_xdp).cast(),
                    mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let bind_error =
            |source: io::Error| XskError::from_bind(config.if_index, config.queue, source);

        if shared {
            // The kernel rejects mode flags here: a shared socket inherits the
            // registration socket's copy/zero-copy and need_wakeup settings.
            bind(libc::XDP_SHARED_UMEM).map_err(bind_error)?;
        } else {
            let wakeup = if config.need_wakeup {
                libc::XDP_USE_NEED_WAKEUP
            } else {
                0
            };
            match config.bind_mode {
                BindMode::Copy => bind(libc::XDP_COPY | wakeup).map_err(bind_error)?,
                BindMode::ZeroCopy => bind(libc::XDP_ZEROCOPY | wakeup).map_err(bind_error)?,
                BindMode::Auto => {
                    if let Err(zero_copy_error) = bind(libc::XDP_ZEROCOPY | wakeup) {
                        tracing::info!(
                            if_index = config.if_index,
                            queue = config.queue,
                            error = %zero_copy_error,
                            "AF_XDP zero-copy bind refused by the driver; falling back to copy mode"
                        );
                        bind(libc::XDP_COPY | wakeup).map_err(bind_error)?;
                    }
                }
            }
        }

        let (options, _) = sys::getsockopt::<libc::xdp_options>(fd, libc::XDP_OPTIONS)
            .map_err(|e| XskError::from_errno("getsockopt(XDP_OPTIONS)", e))?;
        let mode = if options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
            BoundMode::ZeroCopy
        } else {
            BoundMode::Copy
        };
        Ok(Self {
            fill,
            rx,
            tx,
            completion,
            fd: fd_kind,
            umem: umem.clone(),
            mode,
            if_index: config.if_index,
            queue: config.queue,
        })
    }

    /// Asks the kernel to let this socket's `poll`/`sendto`/`recvfrom` drive the queue's NAPI
    /// directly (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` for `usecs`, `SO_BUSY_POLL_BUDGET`
    /// packets), instead of waiting for interrupts: the kernel's AF_XDP busy-poll mode
    /// (Linux 5.11+). Effective on NICs with NAPI; with `napi_defer_hard_irqs` and
    /// `gro_flush_timeout` set on the NIC, interrupts stay off while the worker polls.
    pub fn enable_busy_poll(&self, usecs: u32, budget: u32) -> io::Result<()> {
        let settings = [
            (libc::SO_PREFER_BUSY_POLL, 1),
            (libc::SO_BUSY_POLL, usecs),
            (libc::SO_BUSY_POLL_BUDGET, budget),
        ];
        for (option, value) in settings {
            let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
            // SAFETY: the fd is this socket's, open for its whole life; the option value is a
            // live c_int and the length passed is its size.
            let rc = unsafe {
                libc::setsockopt(
                    self.as_fd().as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    std::ptr::from_ref(&value).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Copy or zero-copy, as the kernel reports it.
    pub fn bound_mode(&self) -> BoundMode {
        self.mode
    }

    /// The interface index it is bound to.
    pub fn if_index(&self) -> u32 {
        self.if_index
    }

    /// The queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The UMEM its frames live in.
    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// Frames put on the TX ring whose completion has not been taken back yet: on the ring,
    /// in the kernel, or completed but not reclaimed.
    pub fn tx_in_flight(&self) -> u64 {
        self.tx
            .submitted()
            .saturating_sub(self.completion.reclaimed())
    }

    /// Asks the kernel to transmit what is on the TX ring. In copy mode one
    /// kick sends a bounded batch (32 frames on current kernels): keep kicking
    /// while [`TxRing::pending`] is non-zero. Transient refusals (ring busy,
    /// no buffers, link down) are not errors: the frames stay queued.
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length sendto with null buffers is the documented
        // AF_XDP TX wakeup; no memory is read.
        let rc = unsafe {
            libc::sendto(
                self.as_fd().as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        transient_ok(rc)
    }

    /// Wakes the kernel to refill from the fill ring when it asks for it
    /// ([`FillRing::needs_wakeup`]); cheap no-op otherwise.
    pub fn wake_rx(&self) -> io::Result<()> {
        if !self.fill.needs_wakeup() {
            return Ok(());
        }
        // SAFETY: a zero-length recvfrom with null buffers is the documented
        // AF_XDP RX wakeup; no memory is written.
        let rc = unsafe {
            libc::recvfrom(
                self.as_fd().as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        transient_ok(rc)
    }

    /// Waits up to `timeout` for received packets; returns whether any wait.
    pub fn poll_rx(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll_fd = libc::pollfd {
            fd: self.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `poll_fd` is one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut poll_fd, 1, timeout_ms) };
        match rc {
            rc if rc < 0 => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
            0 => Ok(false),
            _ => Ok(poll_fd.revents & libc::POLLIN != 0),
        }
    }

    /// The kernel's counters for this socket.
    pub fn statistics(&self) -> io::Result<Statistics> {
        let (stats, _) =
            sys::getsockopt::<libc::xdp_statistics>(self.as_fd(), libc::XDP_STATISTICS)?;
        Ok(Statistics {
            rx_dropped: stats.rx_dropped,
            rx_invalid_descs: stats.rx_invalid_descs,
            tx_invalid_descs: stats.tx_invalid_descs,
            rx_ring_full: stats.rx_ring_full,
            rx_fill_ring_empty_descs: stats.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: stats.tx_ring_empty_descs,
        })
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            SocketFd::Registration => self.umem.registration_fd(),
            SocketFd::Own(own) => own.as_fd(),
        }
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

fn transient_ok(rc: isize) -> io::Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR) => Ok(()),
        _ => Err(error),
    }
}

fn map_ring<T>(
    fd: BorrowedFd<'_>,
    offsets: &libc::xdp_ring_offset,
    size: u32,
    desc_size: usize,
    pgoff: u64,
) -> Result<(RingPointers<T>, Mapping), XskError> {
    let len = offsets.desc as usize + size as usize * desc_size;
    let base =
        sys::mmap_ring(fd, len, pgoff).map_err(|e| XskError::from_errno("mmap(AF_XDP ring)", e))?;
    let mapping = Mapping { ptr: base, len };
    let at = |offset: u64| -> NonNull<u8> {
        assert!((offset as usize) < len);
        // SAFETY: the kernel-reported offset lies inside the mapping (checked).
        unsafe { base.add(offset as usize) }
    };
    let pointers = RingPointers {
        producer: at(offsets.producer).cast(),
        consumer: at(offsets.consumer).cast(),
        flags: at(offsets.flags).cast(),
        descs: at(offsets.desc).cast(),
        size,
    };
    Ok((pointers, mapping))
}
