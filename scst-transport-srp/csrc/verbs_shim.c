/*
 * A thin C layer between the SRP driver (Rust) and libibverbs/librdmacm.
 *
 * ibv_post_send, ibv_post_recv, ibv_poll_cq and ibv_req_notify_cq are static inline in
 * <infiniband/verbs.h>: they have no symbol to link against. Rather than re-declaring the
 * verbs structures in Rust (whose layouts change between rdma-core releases), every function
 * here takes and returns scalars and opaque pointers only, and the structures are built by
 * the C compiler from the installed headers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

/* ---- connection manager ---------------------------------------------------------------- */

struct rdma_event_channel *srp_shim_create_channel(void) { return rdma_create_event_channel(); }

int srp_shim_channel_fd(struct rdma_event_channel *ch) { return ch->fd; }

/* Creates a listening id bound to an IPv4 address and port. Returns NULL with errno set. */
struct rdma_cm_id *srp_shim_listen(struct rdma_event_channel *ch, uint32_t ipv4_be, uint16_t port,
                                   int backlog) {
    struct rdma_cm_id *id = NULL;
    struct sockaddr_in sin;
    if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
        return NULL;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = ipv4_be;
    sin.sin_port = htons(port);
    if (rdma_bind_addr(id, (struct sockaddr *)&sin) || rdma_listen(id, backlog)) {
        int e = errno;
        rdma_destroy_id(id);
        errno = e;
        return NULL;
    }
    return id;
}

/* One CM event. The event stays valid (and its private data readable) until
 * srp_shim_ack_event. */
struct srp_shim_event {
    struct rdma_cm_event *ev;
    struct rdma_cm_id *id;
    int type;
    int status;
    const uint8_t *private_data;
    uint32_t private_data_len;
    uint8_t responder_resources;
    uint8_t initiator_depth;
};

int srp_shim_get_event(struct rdma_event_channel *ch, struct srp_shim_event *out) {
    struct rdma_cm_event *ev;
    if (rdma_get_cm_event(ch, &ev))
        return -errno;
    out->ev = ev;
    out->id = ev->id;
    out->type = (int)ev->event;
    out->status = ev->status;
    out->private_data = ev->param.conn.private_data;
    out->private_data_len = ev->param.conn.private_data_len;
    out->responder_resources = ev->param.conn.responder_resources;
    out->initiator_depth = ev->param.conn.initiator_depth;
    return 0;
}

void srp_shim_ack_event(struct srp_shim_event *e) { rdma_ack_cm_event(e->ev); }

int srp_shim_event_connect_request(void) { return RDMA_CM_EVENT_CONNECT_REQUEST; }
int srp_shim_event_established(void) { return RDMA_CM_EVENT_ESTABLISHED; }
int srp_shim_event_disconnected(void) { return RDMA_CM_EVENT_DISCONNECTED; }
int srp_shim_event_timewait_exit(void) { return RDMA_CM_EVENT_TIMEWAIT_EXIT; }

struct ibv_context *srp_shim_id_verbs(struct rdma_cm_id *id) { return id->verbs; }

struct ibv_qp *srp_shim_id_qp(struct rdma_cm_id *id) { return id->qp; }

/* Device limits the driver needs: most SGEs per send WR, most outstanding RDMA READs this side
 * may initiate, most WRs per queue. */
int srp_shim_query_device(struct ibv_context *ctx, uint32_t *max_sge, uint32_t *max_rd_init,
                          uint32_t *max_qp_wr) {
    struct ibv_device_attr a;
    int r = ibv_query_device(ctx, &a);
    if (r)
        return -r;
    *max_sge = (uint32_t)a.max_sge;
    *max_rd_init = (uint32_t)a.max_qp_init_rd_atom;
    *max_qp_wr = (uint32_t)a.max_qp_wr;
    return 0;
}

/* An RC QP on the id, both queues on one CQ. */
int srp_shim_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *cq, uint32_t send_wr,
                       uint32_t recv_wr, uint32_t send_sge) {
    struct ibv_qp_init_attr a;
    memset(&a, 0, sizeof a);
    a.send_cq = cq;
    a.recv_cq = cq;
    a.qp_type = IBV_QPT_RC;
    a.cap.max_send_wr = send_wr;
    a.cap.max_recv_wr = recv_wr;
    a.cap.max_send_sge = send_sge;
    a.cap.max_recv_sge = 1;
    a.sq_sig_all = 0;
    if (rdma_create_qp(id, pd, &a))
        return -errno;
    return 0;
}

int srp_shim_accept(struct rdma_cm_id *id, const uint8_t *data, uint8_t len, uint8_t responder_resources,
                    uint8_t initiator_depth) {
    struct rdma_conn_param p;
    memset(&p, 0, sizeof p);
    p.private_data = data;
    p.private_data_len = len;
    p.responder_resources = responder_resources;
    p.initiator_depth = initiator_depth;
    p.rnr_retry_count = 7;
    p.flow_control = 1;
    return rdma_accept(id, &p) ? -errno : 0;
}

int srp_shim_reject(struct rdma_cm_id *id, const uint8_t *data, uint8_t len) {
    return rdma_reject(id, data, len) ? -errno : 0;
}

int srp_shim_disconnect(struct rdma_cm_id *id) { return rdma_disconnect(id) ? -errno : 0; }
void srp_shim_destroy_qp(struct rdma_cm_id *id) { rdma_destroy_qp(id); }
int srp_shim_destroy_id(struct rdma_cm_id *id) { return rdma_destroy_id(id) ? -errno : 0; }

/* ---- verbs ----------------------------------------------------------------------------- */

struct ibv_pd *srp_shim_alloc_pd(struct ibv_context *ctx) { return ibv_alloc_pd(ctx); }
int srp_shim_dealloc_pd(struct ibv_pd *pd) { return ibv_dealloc_pd(pd); }

struct ibv_comp_channel *srp_shim_create_comp_channel(struct ibv_context *ctx) {
    return ibv_create_comp_channel(ctx);
}
int srp_shim_comp_channel_fd(struct ibv_comp_channel *c) { return c->fd; }
int srp_shim_destroy_comp_channel(struct ibv_comp_channel *c) { return ibv_destroy_comp_channel(c); }

struct ibv_cq *srp_shim_create_cq(struct ibv_context *ctx, int cqe, struct ibv_comp_channel *ch) {
    return ibv_create_cq(ctx, cqe, NULL, ch, 0);
}
int srp_shim_destroy_cq(struct ibv_cq *cq) { return ibv_destroy_cq(cq); }

int srp_shim_req_notify_cq(struct ibv_cq *cq) { return ibv_req_notify_cq(cq, 0); }

/* Consumes one completion channel event (after the fd polled readable) and acknowledges it. */
int srp_shim_get_cq_event(struct ibv_comp_channel *ch) {
    struct ibv_cq *cq;
    void *ctx;
    if (ibv_get_cq_event(ch, &cq, &ctx))
        return -errno;
    ibv_ack_cq_events(cq, 1);
    return 0;
}

/* Local write for receive and RDMA READ targets; remote access is never granted. */
struct ibv_mr *srp_shim_reg_mr(struct ibv_pd *pd, void *addr, size_t len) {
    return ibv_reg_mr(pd, addr, len, IBV_ACCESS_LOCAL_WRITE);
}
uint32_t srp_shim_mr_lkey(struct ibv_mr *mr) { return mr->lkey; }
int srp_shim_dereg_mr(struct ibv_mr *mr) { return ibv_dereg_mr(mr); }

/* A completion, flattened. opcode: 0 send, 1 RDMA write, 2 RDMA read, 3 receive, 4 other. */
struct srp_shim_wc {
    uint64_t wr_id;
    uint32_t status;
    uint32_t opcode;
    uint32_t byte_len;
};

int srp_shim_poll_cq(struct ibv_cq *cq, struct srp_shim_wc *out, int n) {
    struct ibv_wc wc[16];
    int i, k;
    if (n > 16)
        n = 16;
    k = ibv_poll_cq(cq, n, wc);
    for (i = 0; i < k; i++) {
        out[i].wr_id = wc[i].wr_id;
        out[i].status = (uint32_t)wc[i].status;
        out[i].byte_len = wc[i].byte_len;
        switch (wc[i].status == IBV_WC_SUCCESS ? wc[i].opcode : (enum ibv_wc_opcode)-1) {
        case IBV_WC_SEND: out[i].opcode = 0; break;
        case IBV_WC_RDMA_WRITE: out[i].opcode = 1; break;
        case IBV_WC_RDMA_READ: out[i].opcode = 2; break;
        case IBV_WC_RECV: out[i].opcode = 3; break;
        default: out[i].opcode = 4; break;
        }
    }
    return k;
}

int srp_shim_post_recv(struct ibv_qp *qp, uint64_t wr_id, void *addr, uint32_t len, uint32_t lkey) {
    struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = len, .lkey = lkey };
    struct ibv_recv_wr wr, *bad;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    return ibv_post_recv(qp, &wr, &bad);
}

/* A signaled SEND of one buffer (solicited event when asked). */
int srp_shim_post_send(struct ibv_qp *qp, uint64_t wr_id, void *addr, uint32_t len, uint32_t lkey,
                       int solicited) {
    struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = len, .lkey = lkey };
    struct ibv_send_wr wr, *bad;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED | (solicited ? IBV_SEND_SOLICITED : 0);
    return ibv_post_send(qp, &wr, &bad);
}

/* A signaled RDMA READ (read != 0) or WRITE between one local buffer and one remote one. */
int srp_shim_post_rdma(struct ibv_qp *qp, uint64_t wr_id, int read, void *addr, uint32_t len, uint32_t lkey,
                       uint64_t remote_addr, uint32_t rkey) {
    struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = len, .lkey = lkey };
    struct ibv_send_wr wr, *bad;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote_addr;
    wr.wr.rdma.rkey = rkey;
    return ibv_post_send(qp, &wr, &bad);
}
