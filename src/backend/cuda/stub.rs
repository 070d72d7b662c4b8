//! The CUDA backend in a build without the `cuda` feature: every primitive
//! exists, but the storage type has no values, so none of them can be
//! reached and each costs nothing; the way in, [`upload`], returns
//! [`Error::CudaUnavailable`], as does [`Device::cuda`](crate::Device::cuda).
//! The rest of the crate compiles the same with and without the feature.

use crate::backend::cpu::CpuStorage;
use crate::backend::{
    AdamStep, AttentionParams, Axis, BackendStorage, BinaryOp, CmpOp, CrossEntropyForward, UnaryOp,
    View,
};
use crate::layout::Layout;
use crate::{DType, Error, Result};

/// Device memory of a CUDA tensor: uninhabited without the `cuda` feature.
#[derive(Debug, Clone)]
pub enum CudaStorage {}

/// Copies host elements to CUDA device `ordinal`: the one way into this
/// backend, so the stub's error surfaces here, where a user asked for it.
pub fn upload(host: &CpuStorage, ordinal: usize) -> Result<CudaStorage> {
    let _ = host;
    Err(Error::CudaUnavailable(format!(
        "cannot move a tensor to CUDA device {ordinal}: {}",
        crate::Device::cuda(ordinal).expect_err("no CUDA device exists without the feature")
    )))
}

/// `len` f32 elements equal to `value` on CUDA device `ordinal`.
pub fn full(len: usize, value: f32, ordinal: usize) -> Result<CudaStorage> {
    let _ = (len, value);
    upload(&CpuStorage::F32(Vec::new()), ordinal)
}

impl BackendStorage for CudaStorage {
    fn dtype(&self) -> DType {
        match *self {}
    }
    fn elements(&self) -> usize {
        match *self {}
    }
    fn contiguous_copy(&self, _: &Layout) -> Self {
        match *self {}
    }
    fn copy_from(&mut self, _: &Layout, _: View<Self>, _: &str) {
        match *self {}
    }
    fn add_from(&mut self, _: &Layout, _: View<Self>) -> bool {
        match *self {}
    }
    fn zeros_like(&self, _: usize) -> Self {
        match *self {}
    }
    fn full_like(&self, _: usize, _: f32) -> Self {
        match *self {}
    }
    fn dropout_mask(&self, _: usize, _: f32, _: u64) -> Self {
        match *self {}
    }
    fn to_host(&self, _: &Layout) -> CpuStorage {
        match *self {}
    }
    fn to_dtype(&self, _: &Layout, _: DType) -> Self {
        match *self {}
    }
    fn cumsum(&self, _: &Layout, _: Axis, _: bool) -> Self {
        match *self {}
    }
    fn topk_indices(&self, _: &Layout, _: Axis, _: usize) -> Self {
        match *self {}
    }
    fn gather_dim(&self, _: &Layout, _: usize, _: View<Self>) -> Self {
        match *self {}
    }
    fn scatter_add_dim(&self, _: &Layout, _: usize, _: View<Self>, _: &[usize]) -> Self {
        match *self {}
    }
    fn unary(&self, _: &Layout, _: UnaryOp) -> Self {
        match *self {}
    }
    fn unary_backward(&self, _: &Layout, _: View<Self>, _: View<Self>, _: UnaryOp) -> Self {
        match *self {}
    }
    fn binary(&self, _: &Layout, _: View<Self>, _: BinaryOp) -> Self {
        match *self {}
    }
    fn compare(&self, _: &Layout, _: View<Self>, _: CmpOp) -> Self {
        match *self {}
    }
    fn where_cond(&self, _: &Layout, _: View<Self>, _: View<Self>) -> Self {
        match *self {}
    }
    fn sum_axis(&self, _: &Layout, _: Axis) -> Self {
        match *self {}
    }
    fn max_axis(&self, _: &Layout, _: Axis) -> (Self, Self) {
        match *self {}
    }
    fn max_axis_backward(&self, _: &Layout, _: &Self, _: Axis) -> Self {
        match *self {}
    }
    fn sum_of_squares(&self, _: &Layout) -> Self {
        match *self {}
    }
    fn softmax(&self, _: &Layout, _: usize, _: bool) -> Self {
        match *self {}
    }
    fn causal_softmax(&self, _: &Layout, _: usize, _: usize, _: f32) -> Self {
        match *self {}
    }
    fn softmax_backward(&self, _: &Layout, _: View<Self>, _: f32) -> Self {
        match *self {}
    }
    fn layer_norm(
        &self,
        _: &Layout,
        _: usize,
        _: Option<View<Self>>,
        _: Option<View<Self>>,
        _: f32,
    ) -> (Self, Self) {
        match *self {}
    }
    fn layer_norm_backward(
        &self,
        _: &Layout,
        _: View<Self>,
        _: usize,
        _: Option<View<Self>>,
        _: &Self,
    ) -> (Self, Self, Self) {
        match *self {}
    }
    fn cross_entropy(
        &self,
        _: &Layout,
        _: View<Self>,
        _: usize,
        _: Option<i64>,
    ) -> CrossEntropyForward<Self> {
        match *self {}
    }
    fn cross_entropy_backward(
        &self,
        _: View<Self>,
        _: View<Self>,
        _: usize,
        _: Option<i64>,
        _: &Self,
    ) -> Self {
        match *self {}
    }
    fn embedding(&self, _: &Layout, _: View<Self>) -> Self {
        match *self {}
    }
    fn embedding_backward(&self, _: &Layout, _: View<Self>, _: usize) -> Self {
        match *self {}
    }
    fn matmul(&self, _: &Layout, _: View<Self>, _: &[usize]) -> Self {
        match *self {}
    }
    fn addmm(&self, _: &Layout, _: View<Self>, _: View<Self>) -> Self {
        match *self {}
    }
    fn attention(
        &self,
        _: &Layout,
        _: View<Self>,
        _: View<Self>,
        _: Option<View<Self>>,
        _: &AttentionParams,
    ) -> (Self, Self) {
        match *self {}
    }
    fn attention_backward(
        &self,
        _: &Layout,
        _: View<Self>,
        _: View<Self>,
        _: View<Self>,
        _: &Self,
        _: View<Self>,
        _: Option<View<Self>>,
        _: &AttentionParams,
    ) -> (Self, Self, Self) {
        match *self {}
    }
    fn adam_update(
        &mut self,
        _: View<Self>,
        _: &mut Self,
        _: &mut Self,
        _: AdamStep,
        _: Option<&Self>,
    ) {
        match *self {}
    }
    fn quantize_rows_int8(&self, _: &Layout) -> (Self, Self) {
        match *self {}
    }
    fn matmul_int8(&self, _: &Layout, _: View<Self>, _: View<Self>) -> Self {
        match *self {}
    }
}

impl CudaStorage {
    /// The ordinal of the device holding the storage.
    pub fn ordinal(&self) -> usize {
        match *self {}
    }
}
