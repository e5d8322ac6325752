#!/usr/bin/env python3
"""Writes a seed corpus for ttq_llama_fuzz_gguf: tools/data/stories260K.gguf truncated at
points through its header, metadata, tensor directory and data (each cut at most 16 KiB, so the
fuzzer's max_len stays small), plus small hand-built GGUF files that reach the parts the
truncations cannot: every metadata type, nested arrays, a custom alignment, and one tensor of
each supported type (F32, F16, BF16, Q8_0, Q4_0, Q4_1) with valid data.

Usage: python3 make_fuzz_seeds.py OUT_DIR [tools/data/stories260K.gguf]
       ttq_llama_fuzz_gguf -max_len=16384 -max_total_time=60 CORPUS_DIR OUT_DIR
"""
import os
import struct
import sys

out_dir = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(__file__), "..", "..", "tools", "data", "stories260K.gguf")
os.makedirs(out_dir, exist_ok=True)


def write(name, data):
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)


real = open(model, "rb").read()
for cut in (24, 64, 200, 1024, 4096, 8192, 11400, 12000, 13000, 14000, 14152, 14176, 14300):
    write(f"stories260K_first_{cut}", real[:cut])
# The header with the tensor directory only: metadata count 0, then the directory and a little data.
directory = real.find(struct.pack("<Q", 17) + b"token_embd.weight")
write("stories260K_directory_only", real[:16] + struct.pack("<Q", 0) + real[directory:directory + 4000])


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def build(kvs, tensors, alignment=32):
    """kvs: [(key, type, payload bytes)], tensors: [(name, dims, type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, ty, payload in kvs:
        out += gstr(key) + struct.pack("<I", ty) + payload
    offsets, pos = [], 0
    for _, _, _, data in tensors:
        offsets.append(pos)
        pos += (len(data) + alignment - 1) // alignment * alignment
    for (name, dims, ty, _), off in zip(tensors, offsets):
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, off)
    out += b"\0" * (-len(out) % alignment)
    base = len(out)
    for (_, _, _, data), off in zip(tensors, offsets):
        out += b"\0" * (base + off - len(out)) + data
    return out


def arr(elem_type, items):
    return struct.pack("<IQ", elem_type, len(items)) + b"".join(items)


every_type = [
    ("a.u8", 0, struct.pack("<B", 7)), ("a.i8", 1, struct.pack("<b", -7)),
    ("a.u16", 2, struct.pack("<H", 7)), ("a.i16", 3, struct.pack("<h", -7)),
    ("a.u32", 4, struct.pack("<I", 7)), ("a.i32", 5, struct.pack("<i", -7)),
    ("a.f32", 6, struct.pack("<f", 0.5)), ("a.bool", 7, struct.pack("<B", 1)),
    ("a.str", 8, gstr("h\u00e9llo")), ("a.u64", 10, struct.pack("<Q", 7)),
    ("a.i64", 11, struct.pack("<q", -7)), ("a.f64", 12, struct.pack("<d", 0.25)),
    ("a.strs", 9, arr(8, [gstr("x"), gstr("\u2581y")])),
    ("a.nested", 9, arr(9, [arr(2, [struct.pack("<H", 1)]), arr(4, [])])),
]
write("synthetic_every_metadata_type", build(every_type, []))

half_one, half_half = struct.pack("<H", 0x3C00), struct.pack("<H", 0x3800)
tensors = [
    ("f32", [4], 0, struct.pack("<4f", 1, -2, 3, -4)),
    ("f16", [2, 2], 1, struct.pack("<4H", 0x3C00, 0xC000, 0x3800, 0x0001)),
    ("bf16", [2], 30, struct.pack("<2H", 0x3F80, 0xC040)),
    ("q8_0", [32, 2], 8, (half_half + bytes(range(32))) * 2),
    ("q4_0", [32], 2, half_one + bytes([0x1F] * 16)),
    ("q4_1", [64], 3, (half_half + half_one + bytes([0x2A] * 16)) * 2),
]
write("synthetic_every_tensor_type", build([("general.alignment", 4, struct.pack("<I", 64))], tensors, 64))
write("synthetic_one_f32", build([("general.name", 8, gstr("t"))], tensors[:1]))
