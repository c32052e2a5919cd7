//! The parts of librados' and librbd's C API (Ceph 16, `rados/librados.h`, `rbd/librbd.h`) the
//! RBD store uses, declared by hand: no Rust crate covers librbd, and these few calls are stable
//! across Ceph releases since Luminous.

use std::os::raw::{c_char, c_int, c_void};

pub(crate) type RadosT = *mut c_void;
pub(crate) type RadosIoctxT = *mut c_void;
pub(crate) type RbdImageT = *mut c_void;
pub(crate) type RbdCompletionT = *mut c_void;
pub(crate) type RbdCallbackT = Option<unsafe extern "C" fn(RbdCompletionT, *mut c_void)>;
pub(crate) type UpdateCallbackT = Option<unsafe extern "C" fn(*mut c_void)>;
pub(crate) type DiffCallbackT = Option<unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int>;

/// `rbd_image_info_t`.
#[repr(C)]
pub(crate) struct RbdImageInfo {
    pub(crate) size: u64,
    pub(crate) obj_size: u64,
    pub(crate) num_objs: u64,
    pub(crate) order: c_int,
    pub(crate) block_name_prefix: [c_char; 24],
    pub(crate) parent_pool: i64,
    pub(crate) parent_name: [c_char; 96],
}

/// `EVENT_TYPE_EVENTFD` of `rbd_set_image_notification`.
pub(crate) const EVENT_TYPE_EVENTFD: c_int = 2;

#[link(name = "rados")]
unsafe extern "C" {
    pub(crate) fn rados_create2(
        cluster: *mut RadosT,
        cluster_name: *const c_char,
        name: *const c_char,
        flags: u64,
    ) -> c_int;
    pub(crate) fn rados_conf_read_file(cluster: RadosT, path: *const c_char) -> c_int;
    pub(crate) fn rados_conf_parse_env(cluster: RadosT, var: *const c_char) -> c_int;
    pub(crate) fn rados_conf_set(cluster: RadosT, option: *const c_char, value: *const c_char) -> c_int;
    pub(crate) fn rados_conf_get(cluster: RadosT, option: *const c_char, buf: *mut c_char, len: usize) -> c_int;
    pub(crate) fn rados_connect(cluster: RadosT) -> c_int;
    pub(crate) fn rados_shutdown(cluster: RadosT);
    pub(crate) fn rados_ioctx_create(cluster: RadosT, pool_name: *const c_char, ioctx: *mut RadosIoctxT) -> c_int;
    pub(crate) fn rados_ioctx_destroy(io: RadosIoctxT);
}

#[link(name = "rbd")]
unsafe extern "C" {
    pub(crate) fn rbd_create(io: RadosIoctxT, name: *const c_char, size: u64, order: *mut c_int) -> c_int;
    pub(crate) fn rbd_remove(io: RadosIoctxT, name: *const c_char) -> c_int;
    pub(crate) fn rbd_open(io: RadosIoctxT, name: *const c_char, image: *mut RbdImageT, snap: *const c_char) -> c_int;
    pub(crate) fn rbd_close(image: RbdImageT) -> c_int;
    pub(crate) fn rbd_resize(image: RbdImageT, size: u64) -> c_int;
    pub(crate) fn rbd_stat(image: RbdImageT, info: *mut RbdImageInfo, infosize: usize) -> c_int;
    pub(crate) fn rbd_get_size(image: RbdImageT, size: *mut u64) -> c_int;
    pub(crate) fn rbd_update_watch(image: RbdImageT, handle: *mut u64, cb: UpdateCallbackT, arg: *mut c_void) -> c_int;
    pub(crate) fn rbd_update_unwatch(image: RbdImageT, handle: u64) -> c_int;
    pub(crate) fn rbd_set_image_notification(image: RbdImageT, fd: c_int, kind: c_int) -> c_int;
    pub(crate) fn rbd_discard(image: RbdImageT, ofs: u64, len: u64) -> c_int;
    pub(crate) fn rbd_write_zeroes(image: RbdImageT, ofs: u64, len: usize, zero_flags: c_int, op_flags: c_int)
    -> isize;
    pub(crate) fn rbd_compare_and_write(
        image: RbdImageT,
        ofs: u64,
        len: usize,
        cmp_buf: *const c_char,
        buf: *const c_char,
        mismatch_off: *mut u64,
        op_flags: c_int,
    ) -> isize;
    pub(crate) fn rbd_flush(image: RbdImageT) -> c_int;
    pub(crate) fn rbd_diff_iterate2(
        image: RbdImageT,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: DiffCallbackT,
        arg: *mut c_void,
    ) -> c_int;
    pub(crate) fn rbd_aio_create_completion(cb_arg: *mut c_void, cb: RbdCallbackT, c: *mut RbdCompletionT) -> c_int;
    pub(crate) fn rbd_aio_get_return_value(c: RbdCompletionT) -> isize;
    pub(crate) fn rbd_aio_get_arg(c: RbdCompletionT) -> *mut c_void;
    pub(crate) fn rbd_aio_release(c: RbdCompletionT);
    pub(crate) fn rbd_aio_readv(
        image: RbdImageT,
        iov: *const libc::iovec,
        iovcnt: c_int,
        off: u64,
        c: RbdCompletionT,
    ) -> c_int;
    pub(crate) fn rbd_aio_writev(
        image: RbdImageT,
        iov: *const libc::iovec,
        iovcnt: c_int,
        off: u64,
        c: RbdCompletionT,
    ) -> c_int;
    pub(crate) fn rbd_aio_flush(image: RbdImageT, c: RbdCompletionT) -> c_int;
    pub(crate) fn rbd_poll_io_events(image: RbdImageT, comps: *mut RbdCompletionT, numcomp: c_int) -> c_int;
}
