"""A classic BPF interpreter, for tests: runs our programs and tcpdump -ddd's.

Follows the kernel's semantics (Documentation/networking/filter.rst): a load
outside the packet makes the program return 0; division by zero returns 0;
``SKF_AD_OFF + SKF_AD_PROTOCOL`` loads the EtherType given as ``protocol``
(``SKF_AD_PKTTYPE`` and ``SKF_AD_IFINDEX`` likewise, from ``Meta``).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.pcap.bpf import SKF_AD_IFINDEX, SKF_AD_PKTTYPE, SKF_AD_PROTOCOL, Insn

_SIZES = {0x00: 4, 0x08: 2, 0x10: 1}
_ALU = {
    0x00: lambda a, b: a + b,
    0x10: lambda a, b: a - b,
    0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b,
    0x40: lambda a, b: a | b,
    0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << b,
    0x70: lambda a, b: a >> b,
    0x90: lambda a, b: a % b,
    0xA0: lambda a, b: a ^ b,
}


class _OutOfBounds(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Meta:
    """What the kernel knows of a packet besides its bytes."""

    protocol: int = 0
    pkttype: int = 0
    ifindex: int = 0


def _load(data: bytes, offset: int, size: int, meta: Meta) -> int:
    if offset == SKF_AD_PROTOCOL:
        return meta.protocol
    if offset == SKF_AD_PKTTYPE:
        return meta.pkttype
    if offset == SKF_AD_IFINDEX:
        return meta.ifindex
    if offset < 0 or offset + size > len(data):
        raise _OutOfBounds
    return int.from_bytes(data[offset : offset + size], "big")


def run(program: list[Insn], data: bytes, protocol: int = 0, meta: Meta | None = None) -> int:
    """The program's return value for ``data`` (0: drop)."""
    try:
        return _run(program, data, meta or Meta(protocol))
    except (_OutOfBounds, ZeroDivisionError):
        return 0


def _run(program: list[Insn], data: bytes, protocol: Meta) -> int:
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        ins = program[pc]
        pc += 1
        cls, code, k = ins.code & 7, ins.code, ins.k
        if cls == 0:  # LD
            mode, size = code & 0xE0, _SIZES[code & 0x18]
            if mode == 0x00:
                a = k
            elif mode == 0x20:
                a = _load(data, k, size, protocol)
            elif mode == 0x40:
                a = _load(data, (x + k) & 0xFFFFFFFF, size, protocol)
            elif mode == 0x60:
                a = mem[k]
            elif mode == 0x80:
                a = len(data)
        elif cls == 1:  # LDX
            mode = code & 0xE0
            if mode == 0x00:
                x = k
            elif mode == 0x60:
                x = mem[k]
            elif mode == 0x80:
                x = len(data)
            elif mode == 0xA0:  # MSH: 4 * (P[k] & 0xf)
                x = 4 * (_load(data, k, 1, protocol) & 0xF)
        elif cls == 2:
            mem[k] = a
        elif cls == 3:
            mem[k] = x
        elif cls == 4:  # ALU
            op = code & 0xF0
            a = -a if op == 128 else _ALU[op](a, x if code & 8 else k)
            a &= 0xFFFFFFFF
        elif cls == 5:  # JMP
            op, operand = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x00:
                pc += k
                continue
            cond = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand}.get(
                op, bool(a & operand)
            )
            pc += ins.jt if cond else ins.jf
        elif cls == 6:  # RET
            return a if code & 0x18 == 0x10 else k
        else:  # MISC: TAX / TXA
            if code & 0xF8 == 0:
                x = a
            else:
                a = x


def parse_ddd(text: str) -> list[Insn]:
    """The program ``tcpdump -ddd`` prints: a count, then ``code jt jf k`` lines."""
    lines = text.split("\n")
    count = int(lines[0])
    return [Insn(*map(int, line.split())) for line in lines[1 : count + 1]]
