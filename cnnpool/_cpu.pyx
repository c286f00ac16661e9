"""What this CPU and its OS support, and how this build was compiled.

:func:`x86_features` reads CPUID and, for the vector registers' state, the
OS's XCR0 (XGETBV): an instruction set counts only when the CPU has it *and*
the OS saves its registers on a context switch (an OS without AVX-512
support leaves those bits clear, and AVX-512 code would fault).
cnnpool._dispatch uses it to pick each kernel module's CPU variant.  This
module is always compiled for the baseline of the target, never as a variant.
"""

from libc.stdint cimport uint32_t, uint64_t


cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
    #define CNNPOOL_X86 1
    #if defined(_MSC_VER)
    #include <intrin.h>
    static void cnnpool_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
    {
        int v[4];
        __cpuidex(v, (int)leaf, (int)sub);
        r[0] = (uint32_t)v[0]; r[1] = (uint32_t)v[1]; r[2] = (uint32_t)v[2]; r[3] = (uint32_t)v[3];
    }
    static uint64_t cnnpool_xgetbv0(void) { return _xgetbv(0); }
    #else
    #include <cpuid.h>
    static void cnnpool_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
    {
        __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    }
    /* The instruction itself: the _xgetbv intrinsic needs -mxsave, which
       a baseline build does not pass. */
    static uint64_t cnnpool_xgetbv0(void)
    {
        uint32_t lo, hi;
        __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
        return ((uint64_t)hi << 32) | lo;
    }
    #endif
    #else
    #define CNNPOOL_X86 0
    static void cnnpool_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
    {
        (void)leaf; (void)sub; r[0] = r[1] = r[2] = r[3] = 0;
    }
    static uint64_t cnnpool_xgetbv0(void) { return 0; }
    #endif

    #define CNNPOOL_STR_(x) #x
    #define CNNPOOL_STR(x) CNNPOOL_STR_(x)
    #ifdef CNNPOOL_BUILD_MODE
    #define CNNPOOL_MODE_NAME CNNPOOL_STR(CNNPOOL_BUILD_MODE)
    #else
    #define CNNPOOL_MODE_NAME "unknown"
    #endif
    #if defined(__clang__)
    #define CNNPOOL_COMPILER "Clang " __clang_version__
    #elif defined(__GNUC__)
    #define CNNPOOL_COMPILER "GCC " __VERSION__
    #elif defined(_MSC_VER)
    #define CNNPOOL_COMPILER "MSVC " CNNPOOL_STR(_MSC_FULL_VER)
    #else
    #define CNNPOOL_COMPILER "unknown compiler"
    #endif
    #ifdef _OPENMP
    #define CNNPOOL_OPENMP_VERSION _OPENMP
    #else
    #define CNNPOOL_OPENMP_VERSION 0
    #endif
    """
    bint CNNPOOL_X86
    const char *CNNPOOL_MODE_NAME
    const char *CNNPOOL_COMPILER
    int CNNPOOL_OPENMP_VERSION
    void cnnpool_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) noexcept nogil
    uint64_t cnnpool_xgetbv0() noexcept nogil


# (name, CPUID leaf, subleaf, register 0-3 = eax..edx, bit)
_CPUID_BITS = (
    ("sse3", 1, 0, 2, 0),
    ("ssse3", 1, 0, 2, 9),
    ("fma", 1, 0, 2, 12),
    ("sse4_1", 1, 0, 2, 19),
    ("sse4_2", 1, 0, 2, 20),
    ("movbe", 1, 0, 2, 22),
    ("popcnt", 1, 0, 2, 23),
    ("osxsave", 1, 0, 2, 27),
    ("avx", 1, 0, 2, 28),
    ("f16c", 1, 0, 2, 29),
    ("sse2", 1, 0, 3, 26),
    ("bmi1", 7, 0, 1, 3),
    ("avx2", 7, 0, 1, 5),
    ("bmi2", 7, 0, 1, 8),
    ("avx512f", 7, 0, 1, 16),
    ("avx512dq", 7, 0, 1, 17),
    ("avx512cd", 7, 0, 1, 28),
    ("avx512bw", 7, 0, 1, 30),
    ("avx512vl", 7, 0, 1, 31),
    ("lzcnt", 0x80000001, 0, 2, 5),
)

# XCR0 bits: SSE (1) and AVX (2) state; AVX-512 opmask (5), upper halves of
# zmm0-15 (6) and zmm16-31 (7).
_XCR0_AVX = 0b110
_XCR0_AVX512 = 0b11100000


def is_x86():
    """True when this build targets x86 (CPUID is available)."""
    return bool(CNNPOOL_X86)


def x86_features():
    """The x86 features the CPU has and the OS supports, as a set of lower-case names.

    Names as Linux's ``/proc/cpuinfo`` spells them (``avx2``, ``avx512f``,
    ``fma``, ...).  AVX-based features (``avx``, ``avx2``, ``fma``, ``f16c``)
    count only when the OS saves the AVX state, AVX-512 ones only when it
    also saves the AVX-512 state (XCR0).  Empty on other architectures.
    """
    cdef uint32_t r[4]
    cdef uint32_t max_leaf, max_ext
    if not CNNPOOL_X86:
        return frozenset()
    cnnpool_cpuid(0, 0, r)
    max_leaf = r[0]
    cnnpool_cpuid(0x80000000, 0, r)
    max_ext = r[0]
    regs = {}
    for leaf in (1, 7, 0x80000001):
        if (leaf < 0x80000000 and leaf > max_leaf) or (leaf >= 0x80000000 and leaf > max_ext):
            regs[leaf] = (0, 0, 0, 0)
            continue
        cnnpool_cpuid(leaf, 0, r)
        regs[leaf] = (r[0], r[1], r[2], r[3])
    have = {name for name, leaf, _, reg, bit in _CPUID_BITS if regs[leaf][reg] >> bit & 1}
    xcr0 = cnnpool_xgetbv0() if "osxsave" in have else 0
    if xcr0 & _XCR0_AVX != _XCR0_AVX:
        have -= {"avx", "avx2", "fma", "f16c"}
    if xcr0 & (_XCR0_AVX | _XCR0_AVX512) != _XCR0_AVX | _XCR0_AVX512:
        have = {name for name in have if not name.startswith("avx512")}
    return frozenset(have)


def build_info():
    """How the extensions were compiled: {'mode', 'compiler', 'openmp'}.

    ``mode`` is ``dispatch`` (CPU variants), ``native`` (``-march=native``)
    or ``portable`` (the target's baseline), with ``_debug`` appended for a
    sanitizer build; ``openmp`` is the OpenMP version date (e.g. 201511),
    0 without OpenMP.
    """
    return {
        "mode": CNNPOOL_MODE_NAME.decode(),
        "compiler": CNNPOOL_COMPILER.decode().strip(),
        "openmp": CNNPOOL_OPENMP_VERSION,
    }
