/* An XDP program the kernel verifier must refuse: it reads the first packet byte without
 * checking it against data_end. Compiled by dataplane/tests/xdp_errors.rs with clang to
 * check that the loader reports the refusal with the verifier's log. */
#define SEC(name) __attribute__((section(name), used))

struct xdp_md {
	unsigned int data;
	unsigned int data_end;
	unsigned int data_meta;
	unsigned int ingress_ifindex;
	unsigned int rx_queue_index;
	unsigned int egress_ifindex;
};

SEC("xdp")
int read_without_bounds_check(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;
	return data[0] == 4 ? 3 : 2;
}

char _license[] SEC("license") = "GPL";
