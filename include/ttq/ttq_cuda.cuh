// ttq's CUDA umbrella: include this from a .cu file (compiled by nvcc for sm_80 or newer, never
// with --use_fast_math) to get everything in ttq/ttq.hpp plus the CUDA backend: the
// backend::Cuda tag for host-memory operators (OnlineAWQ<..., backend::Cuda>), the device
// operator cuda::CudaOnlineAWQ, and the kernels' launchers (statistics, quantize + pack, packed
// GEMV). ttq/ttq.hpp itself stays plain host C++ and never includes this. See docs/cuda.md.
#pragma once

#include "ttq/ttq.hpp"

#include "ttq/backend/cuda/common.cuh"
#include "ttq/backend/cuda/gemv.cuh"
#include "ttq/backend/cuda/gemv_layout.hpp"
#include "ttq/backend/cuda/kernels.cuh"
#include "ttq/backend/cuda/quantize.cuh"
#include "ttq/backend/cuda/stats.cuh"
#include "ttq/op/cuda/online_awq.cuh"
