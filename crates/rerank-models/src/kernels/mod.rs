//! CPU kernels that are the product: GEMMs on weights pre-packed at load for the instruction
//! that consumes them, chosen at run time from the CPU's features.

pub mod bf16_gemm;
pub mod int8_gemm;
