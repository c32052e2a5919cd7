//! The FCoE link on a Linux network interface: a raw `AF_PACKET` socket moving the Ethernet
//! frames of a [`Vn2VnPort`].
//!
//! One thread runs the port: it waits in `poll(2)` for frames, for the port's next timer and
//! for completions of commands that ran on device workers (an `eventfd` the port's waker
//! signals). The socket is bound to the interface with `ETH_P_ALL` in promiscuous mode, since
//! FCoE frames go to VN_Port MACs (`0E:FD:00:..`) the interface does not own; frames the
//! interface sends itself are skipped. Needs `CAP_NET_RAW`.
//!
//! The interface MTU sets the FC frame size: 2158 bytes or more carry full 2112-byte FC
//! payloads (use 2500 or jumbo frames); 1500 limits them to 1452 bytes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use scst::Target;

use crate::port::PortConfig;
use crate::vn2vn::Vn2VnPort;

/// What the driver needs to know about an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Interface index.
    pub index: i32,
    /// MAC address (the ENode MAC).
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: usize,
}

fn sysfs(name: &str, what: &str) -> io::Result<String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    Ok(std::fs::read_to_string(format!("/sys/class/net/{name}/{what}"))?.trim().to_string())
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

impl Interface {
    /// Reads the index, MAC and MTU of interface `name` from sysfs.
    ///
    /// # Errors
    /// The interface does not exist or its attributes do not parse.
    pub fn lookup(name: &str) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: bad {what}"));
        let index = sysfs(name, "ifindex")?.parse().map_err(|_| bad("ifindex"))?;
        let mac = parse_mac(&sysfs(name, "address")?).ok_or_else(|| bad("address"))?;
        let mtu = sysfs(name, "mtu")?.parse().map_err(|_| bad("mtu"))?;
        Ok(Self { index, mac, mtu })
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// The raw socket of one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

impl PacketSocket {
    /// Opens a non-blocking `AF_PACKET` socket bound to `ifc`, in promiscuous mode.
    ///
    /// # Errors
    /// Socket errors (`EPERM` without `CAP_NET_RAW`).
    pub fn open(ifc: &Interface) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL_BE),
            )
        })?;
        // SAFETY: `raw` is a descriptor we just opened and own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_ll is a valid value of the plain C struct.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL_BE;
        sll.sll_ifindex = ifc.index;
        // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
        cvt(unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        })?;
        let mreq = libc::packet_mreq {
            mr_ifindex: ifc.index,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: `mreq` is a valid packet_mreq and the length passed is its size.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const mreq).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })?;
        // A burst of write data (a 256 KiB XFER_RDY is 128 full-size frames, several commands
        // may answer theirs at once) must not overflow the default receive buffer: the kernel
        // drops what does not fit and the write stalls. As root the limit does not apply.
        for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
            let size: libc::c_int = 64 << 20;
            for opt in [force, plain] {
                // SAFETY: `size` is a valid c_int and the length passed is its size.
                let r = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&raw const size).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if r == 0 {
                    break;
                }
            }
        }
        Ok(Self { fd })
    }

    /// Frames the kernel dropped because the receive buffer was full, since the last call
    /// (`PACKET_STATISTICS`).
    pub fn drops(&self) -> u32 {
        let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st`/`len` describe a valid tpacket_stats buffer.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut st).cast(),
                &raw mut len,
            )
        };
        if r == 0 { st.tp_drops } else { 0 }
    }

    /// Receives one frame the interface received (not one it sent) into `buf`; `Ok(None)` when
    /// none is waiting.
    ///
    /// # Errors
    /// Socket errors other than `EAGAIN`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: an all-zero sockaddr_ll is a valid value of the plain C struct.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is writable for its length; `from`/`len` describe a valid buffer.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }

    /// Sends one Ethernet frame, waiting up to 100 ms for room in the socket.
    ///
    /// # Errors
    /// Socket errors, or `WouldBlock` if the socket stayed full.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: `frame` is readable for its length.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&raw mut p, 1, 100) };
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// An `eventfd` the port's waker signals from device worker threads.
#[derive(Debug)]
struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd(2) with constant arguments; the result is checked.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `raw` is a descriptor we just opened and own from here on.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 readable bytes to our own eventfd (the Arc keeps it open).
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn clear(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }
}

/// A VN2VN FCoE target on one interface.
#[derive(Debug)]
pub struct FcoeDriver {
    sock: PacketSocket,
    wake: Arc<EventFd>,
    port: Vn2VnPort,
    start: Instant,
    ifc: Interface,
}

impl FcoeDriver {
    /// Opens interface `name` and a VN2VN port on it serving `target` (its WWPN/WWNN and limits
    /// from `cfg`; the N_Port ID comes from the VN2VN claim, the frame size from the MTU).
    ///
    /// # Errors
    /// The interface cannot be found or opened.
    pub fn open(name: &str, cfg: PortConfig, target: Arc<Target>) -> io::Result<Self> {
        let ifc = Interface::lookup(name)?;
        let sock = PacketSocket::open(&ifc)?;
        let wake = Arc::new(EventFd::new()?);
        let mut port = Vn2VnPort::new(cfg, target, ifc.mac, ifc.mtu, 0);
        let w = wake.clone();
        port.port_mut().set_waker(move || w.signal());
        Ok(Self { sock, wake, port, start: Instant::now(), ifc })
    }

    /// The interface.
    pub fn interface(&self) -> &Interface {
        &self.ifc
    }

    /// The port.
    pub fn port(&self) -> &Vn2VnPort {
        &self.port
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn flush(&mut self) {
        while let Some(f) = self.port.poll_transmit() {
            if let Err(e) = self.sock.send(&f) {
                tracing::warn!(error = %e, len = f.len(), "FCoE send failed");
            }
        }
    }

    /// Runs the port until `stop` is set (checked at least every 100 ms).
    ///
    /// # Errors
    /// A socket error other than a full send buffer.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Relaxed) {
            let now = self.now();
            if self.port.poll_timeout() <= now {
                self.port.handle_timeout(now);
            }
            self.flush();
            let wait = self.port.poll_timeout().saturating_sub(now).min(100) as libc::c_int;
            let mut fds = [
                libc::pollfd { fd: self.sock.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.wake.0.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: two valid pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                self.wake.clear();
                self.port.port_mut().process_async();
            }
            let now = self.now();
            while let Some(n) = self.sock.recv(&mut buf)? {
                if let Err(e) = self.port.handle_ethernet(now, &buf[..n]) {
                    tracing::trace!(error = %e, "frame not used");
                }
                self.flush();
            }
            self.flush();
            let drops = self.sock.drops();
            if drops > 0 {
                tracing::warn!(drops, "the kernel dropped received frames (socket buffer full)");
            }
        }
        self.port.port_mut().link_down();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("0e:fd:00:00:12:34"), Some([0x0e, 0xfd, 0, 0, 0x12, 0x34]));
        assert_eq!(parse_mac("0e:fd:00:00:12"), None);
        assert_eq!(parse_mac("0e:fd:00:00:12:34:56"), None);
        assert_eq!(parse_mac("zz:fd:00:00:12:34"), None);
    }

    #[test]
    fn loopback_interface_is_found() {
        let lo = Interface::lookup("lo").unwrap();
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.index > 0 && lo.mtu > 0);
        assert!(Interface::lookup("../etc").is_err());
        assert!(Interface::lookup("no-such-if0").is_err());
    }
}
