// The CPU half of the binding templates (csrc/binding/<family>_binding.h): the device type, and a
// guard that does nothing (CPU kernels need no current device or stream). Each family's Backend
// (CpuMasking, CpuGather, CpuProposal) adds its kernels.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/DeviceType.h>

namespace fastmask {

struct CpuDevice {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;
  struct Guard {
    explicit Guard(c10::Device) {}
  };
};

}  // namespace fastmask
