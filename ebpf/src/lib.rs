//! XDP steering program: built and embedded by the XDP issue (see ebpf/README when present).
