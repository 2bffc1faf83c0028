//! warpline data plane.
