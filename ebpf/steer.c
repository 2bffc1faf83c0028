// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
//
// warpline XDP steering program.
//
// WAN role (`steer_wan`): WireGuard transport data (type 4) sent to one of the
// listen ports goes to the AF_XDP socket of the packet's RX queue; handshakes
// (types 1-3), malformed WireGuard messages, ARP/ND and everything else go to
// the kernel, where the control plane's UDP socket and the stack handle them.
//
// LAN role (`steer_lan`): IPv4/IPv6 packets whose destination lies in a tunnel
// prefix go to the queue's AF_XDP socket; everything else goes to the kernel.
//
// Anything the program cannot parse safely (truncated headers, IPv4 fragments,
// IPv6 extension headers, stacked VLAN tags) passes to the kernel: the kernel
// is the slow path that is always correct, so doubt means XDP_PASS.
//
// This file deliberately includes no headers: the few UAPI definitions it
// needs are spelled out below, so building it takes only clang (no
// libbpf-dev, no kernel headers, no multiarch asm/ include path).
//
// Keep the map names, program names and verdict numbers in sync with
// ebpf/src/lib.rs.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
// BTF-defined map declarations, as libbpf's bpf_helpers.h spells them: the
// loader reads the type, sizes and limits from the pointee types in BTF.
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// UAPI: include/uapi/linux/bpf.h
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP = 1,
	XDP_PASS = 2,
	XDP_TX = 3,
	XDP_REDIRECT = 4,
};

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_XSKMAP = 17,
};

#define BPF_F_NO_PREALLOC 1U

// Helper functions are called by number; the numbers are stable UAPI.
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

// Network byte order for constants: the BPF target here is little-endian.
#define bpf_htons(x) ((__be16)__builtin_bswap16(x))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16(x))

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_UDP 17
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

struct ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
	__be16 h_proto;
} __attribute__((packed));

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct iphdr {
	__u8 ihl_version; // little-endian bitfield order: ihl in the low nibble
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr {
	__u8 priority_version;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

// --- Contract with userspace (ebpf/src/lib.rs) -------------------------------

// Verdict counter slots. Every exit path bumps exactly one.
enum verdict {
	VERDICT_REDIRECTED = 0,    // handed to the queue's AF_XDP socket
	VERDICT_PASS_NOT_IP = 1,   // ARP, LLDP, ... : not IPv4/IPv6
	VERDICT_PASS_UNPARSED = 2, // truncated, fragment, IPv4 options, extension header, stacked VLAN
	VERDICT_PASS_NOT_UDP = 3,  // ICMP, ND, TCP, ... (WAN)
	VERDICT_PASS_OTHER_PORT = 4,  // UDP, but not to a listen port (WAN)
	VERDICT_PASS_HANDSHAKE = 5,   // WireGuard types 1-3 for the control plane (WAN)
	VERDICT_PASS_MALFORMED = 6,   // to a listen port, but not a plausible type-4 message (WAN)
	VERDICT_PASS_NO_SOCKET = 7,   // would redirect, but no AF_XDP socket on this queue
	VERDICT_PASS_OUTSIDE_PREFIXES = 8, // destination outside every tunnel prefix (LAN)
	VERDICT_COUNT = 9,
};

struct lpm_key_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_key_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

// Listen ports in host byte order; the value is unused (presence is the fact).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} listen_ports SEC(".maps");

// RX queue index -> AF_XDP socket. The loader resizes it to the queue count.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct lpm_key_v4);
	__type(value, __u8);
} lan_prefixes_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct lpm_key_v6);
	__type(value, __u8);
} lan_prefixes_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

// WireGuard message layout: type (1 byte) + 3 reserved zero bytes.
#define WG_TYPE_TRANSPORT 4
// type-4 header (type, reserved, receiver index, counter) + Poly1305 tag:
// an empty keepalive is exactly this long.
#define WG_TRANSPORT_MIN_LEN 32

// ----------------------------------------------------------------------------

static __always_inline int count(enum verdict v, int action)
{
	__u32 slot = v;
	__u64 *counter = bpf_map_lookup_elem(&verdicts, &slot);
	if (counter)
		*counter += 1; // per-CPU slot: no other writer, no atomics needed
	return action;
}

static __always_inline int to_socket(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	// A lookup first, so that a queue without a socket is counted and passed
	// instead of silently dropped by a failed redirect.
	if (!bpf_map_lookup_elem(&xsks, &queue))
		return count(VERDICT_PASS_NO_SOCKET, XDP_PASS);
	return count(VERDICT_REDIRECTED, bpf_redirect_map(&xsks, queue, XDP_PASS));
}

struct l3 {
	void *start;    // first byte of the IP header
	__u16 proto;    // ETH_P_IP or ETH_P_IPV6, host order
};

// Returns 0 and fills `out` for IPv4/IPv6, otherwise the verdict to return.
static __always_inline int parse_l2(struct xdp_md *ctx, struct l3 *out, enum verdict *why)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end) {
		*why = VERDICT_PASS_UNPARSED;
		return -1;
	}
	__u16 proto = bpf_ntohs(eth->h_proto);
	void *next = eth + 1;
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		struct vlan_hdr *vlan = next;
		if ((void *)(vlan + 1) > data_end) {
			*why = VERDICT_PASS_UNPARSED;
			return -1;
		}
		proto = bpf_ntohs(vlan->encapsulated_proto);
		next = vlan + 1;
		if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
			*why = VERDICT_PASS_UNPARSED;
			return -1;
		}
	}
	if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
		*why = VERDICT_PASS_NOT_IP;
		return -1;
	}
	out->start = next;
	out->proto = proto;
	return 0;
}

SEC("xdp")
int steer_wan(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct l3 l3;
	enum verdict why = VERDICT_PASS_UNPARSED;
	if (parse_l2(ctx, &l3, &why))
		return count(why, XDP_PASS);

	struct udphdr *udp;
	if (l3.proto == ETH_P_IP) {
		struct iphdr *ip = l3.start;
		if ((void *)(ip + 1) > data_end)
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		// Only option-less headers (IHL 5): reaching the UDP header behind options would
		// take pointer arithmetic with a variable offset, which the verifier allows only
		// with CAP_PERFMON (Spectre v1 hardening), and the gateway runs without it.
		// WireGuard over IPv4 with options is vanishingly rare; the kernel socket takes it.
		if (ip->ihl_version != 0x45)
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		if (ip->protocol != IPPROTO_UDP)
			return count(VERDICT_PASS_NOT_UDP, XDP_PASS);
		// Fragments need reassembly: the kernel does that.
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		udp = (void *)(ip + 1);
	} else {
		struct ipv6hdr *ip6 = l3.start;
		if ((void *)(ip6 + 1) > data_end)
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		// No extension-header walking: a UDP data packet has none.
		if (ip6->nexthdr != IPPROTO_UDP)
			return count(VERDICT_PASS_NOT_UDP, XDP_PASS);
		udp = (void *)(ip6 + 1);
	}
	if ((void *)(udp + 1) > data_end)
		return count(VERDICT_PASS_UNPARSED, XDP_PASS);

	__u16 port = bpf_ntohs(udp->dest);
	if (!bpf_map_lookup_elem(&listen_ports, &port))
		return count(VERDICT_PASS_OTHER_PORT, XDP_PASS);

	__u8 *wg = (void *)(udp + 1);
	if ((void *)(wg + 4) > data_end)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	if (wg[1] | wg[2] | wg[3])
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	if (wg[0] >= 1 && wg[0] <= 3)
		return count(VERDICT_PASS_HANDSHAKE, XDP_PASS);
	if (wg[0] != WG_TYPE_TRANSPORT)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) + WG_TRANSPORT_MIN_LEN ||
	    (void *)wg + WG_TRANSPORT_MIN_LEN > data_end)
		return count(VERDICT_PASS_MALFORMED, XDP_PASS);
	return to_socket(ctx);
}

SEC("xdp")
int steer_lan(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct l3 l3;
	enum verdict why = VERDICT_PASS_UNPARSED;
	if (parse_l2(ctx, &l3, &why))
		return count(why, XDP_PASS);

	if (l3.proto == ETH_P_IP) {
		struct iphdr *ip = l3.start;
		if ((void *)(ip + 1) > data_end)
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		if ((ip->ihl_version >> 4) != 4)
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		struct lpm_key_v4 key = { .prefixlen = 32 };
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		if (!bpf_map_lookup_elem(&lan_prefixes_v4, &key))
			return count(VERDICT_PASS_OUTSIDE_PREFIXES, XDP_PASS);
	} else {
		struct ipv6hdr *ip6 = l3.start;
		if ((void *)(ip6 + 1) > data_end)
			return count(VERDICT_PASS_UNPARSED, XDP_PASS);
		struct lpm_key_v6 key = { .prefixlen = 128 };
		__builtin_memcpy(key.addr, ip6->daddr, 16);
		if (!bpf_map_lookup_elem(&lan_prefixes_v6, &key))
			return count(VERDICT_PASS_OUTSIDE_PREFIXES, XDP_PASS);
	}
	return to_socket(ctx);
}

// For the far end of a veth: redirecting or XDP_TX-ing *into* a veth needs
// an XDP program on the receiving end, which this one satisfies.
SEC("xdp")
int pass_all(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
