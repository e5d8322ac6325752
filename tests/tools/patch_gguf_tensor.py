#!/usr/bin/env python3
"""Writes a copy of a GGUF v3 file with every value of one F32 tensor set to a constant: the
crafted models of tests/tools/cli_errors.sh (e.g. a norm weight of 1e20, whose activations reach
1e20 in the projections after it). Python standard library only.

Usage: python3 patch_gguf_tensor.py IN.gguf OUT.gguf TENSOR_NAME VALUE
"""
import struct
import sys

# Byte sizes of the scalar metadata types (GGUF spec): u8 i8 u16 i16 u32 i32 f32 bool _ _ u64 i64 f64.
SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, F32 = 8, 9, 0


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", "replace")

    def value(self, kind):
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            elem, count = self.take("I"), self.take("Q")
            return [self.value(elem) for _ in range(count)]
        size = SCALAR_BYTES[kind]
        raw = self.data[self.pos:self.pos + size]
        self.pos += size
        return int.from_bytes(raw, "little") if kind in (4, 10) else raw


def main():
    src, dst, name, value = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    data = bytearray(open(src, "rb").read())
    r = Reader(data)
    if r.take("4s") != b"GGUF" or r.take("I") != 3:
        sys.exit(f"{src}: not a GGUF v3 file")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    alignment = 32
    for _ in range(n_kv):
        key, kind = r.string(), r.take("I")
        v = r.value(kind)
        if key == "general.alignment":
            alignment = v
    tensors = {}
    for _ in range(n_tensors):
        tname = r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        kind, offset = r.take("I"), r.take("Q")
        tensors[tname] = (dims, kind, offset)
    base = (r.pos + alignment - 1) // alignment * alignment
    if name not in tensors:
        sys.exit(f"{src}: no tensor '{name}'")
    dims, kind, offset = tensors[name]
    if kind != F32:
        sys.exit(f"{src}: tensor '{name}' is not F32 (type {kind})")
    count = 1
    for d in dims:
        count *= d
    struct.pack_into(f"<{count}f", data, base + offset, *([value] * count))
    open(dst, "wb").write(data)


if __name__ == "__main__":
    main()
