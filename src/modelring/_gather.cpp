// Fused element-wise generation for the version-2 wiring (see wiring.py, "Element-wise layout").
//
// Compiled on first use by kernels.py (g++ -O3 -fopenmp, no torch headers: it builds in under a second) and
// called through ctypes with raw pointers. Both loops are gathers: every output element is written by exactly one
// thread and, in the backward, each ring entry sums its copies in ascending copy order whatever the thread count,
// so results are bitwise identical run to run and for any number of threads. No atomics anywhere.
//
// Tables (int16, two bytes per virtual weight each):
//   fwd[j] = rho_q(j mod B) | sign_j << 15     position of weight j inside its chunk's tile, and its sign
//   inv[p] = rho_q^-1(p mod B) | sign << 15    the weight (inside its chunk) that lands on tiled position p
// and per chunk / slot (int64, one per B weights): base[q] = ring entry where chunk q's tile starts,
// start[s] = first weight of the chunk whose tile is slot s. Ring entry of tiled position p is p mod n.
#include <stdint.h>
#include <omp.h>

namespace {

template <typename T> struct Bits;
template <> struct Bits<float> { using U = uint32_t; static constexpr int shift = 16; };
template <> struct Bits<double> { using U = uint64_t; static constexpr int shift = 48; };

// v with its sign flipped when bit 15 of code is set: an exclusive-or on the bits (what negation does), which
// the compiler vectorises, unlike a branch
template <typename T>
inline T signed_by(T v, uint16_t code) {
    using U = typename Bits<T>::U;
    U u;
    __builtin_memcpy(&u, &v, sizeof(T));
    u ^= static_cast<U>(code & 0x8000) << Bits<T>::shift;
    __builtin_memcpy(&v, &u, sizeof(T));
    return v;
}

// Ask for a window of the source ahead of its use: the reads inside it are random, so the hardware prefetcher
// (which follows sequential streams) cannot, and every first touch of a line would stall. Into L2 (locality 1),
// not L1: L1 holds the window in use and the partial sums (measured ~5% faster than prefetching into L1)
template <typename T>
inline void prefetch_window(const T* window, int64_t count) {
    const char* p = reinterpret_cast<const char*>(window);
    for (int64_t b = 0; b < count * int64_t(sizeof(T)); b += 64) __builtin_prefetch(p + b, 0, 1);
}

// out[i] = scale * sign_i * window[offset_i] for i in [0, count): 16-bit offsets into one window, a loop the
// compiler turns into vector gathers
template <typename T>
inline void gather_window(const T* __restrict window, const uint16_t* __restrict code, int64_t count, T scale,
                          T* __restrict out) {
    if (scale == T(1)) {  // the default (no per-layer scale): skip the multiply, same values
        for (int64_t i = 0; i < count; i++) out[i] = signed_by(window[code[i] & 0x7FFF], code[i]);
        return;
    }
    for (int64_t i = 0; i < count; i++) out[i] = scale * signed_by(window[code[i] & 0x7FFF], code[i]);
}

// acc[i] += scale * sign_i * window[offset_i]: the backward's counterpart
template <typename T>
inline void accumulate_window(const T* __restrict window, const uint16_t* __restrict code, int64_t count, T scale,
                              T* __restrict acc) {
    if (scale == T(1)) {
        for (int64_t i = 0; i < count; i++) acc[i] += signed_by(window[code[i] & 0x7FFF], code[i]);
        return;
    }
    for (int64_t i = 0; i < count; i++) acc[i] += scale * signed_by(window[code[i] & 0x7FFF], code[i]);
}

// One chunk (or part of one): ring entries base + offset_i, mod n
template <typename T>
inline void gather_chunk(const T* ring, int64_t n, int64_t base, int64_t width, const int16_t* fwd, int64_t count,
                         T scale, T* out) {
    const uint16_t* code = reinterpret_cast<const uint16_t*>(fwd);
    if (base + width <= n) {  // the window does not reach the end of the ring: the common case
        gather_window<T>(ring + base, code, count, scale, out);
        return;
    }
    for (int64_t i = 0; i < count; i++)  // a window that wraps around the ring's end, or a ring smaller than it
        out[i] = scale * signed_by(ring[(base + (code[i] & 0x7FFF)) % n], code[i]);
}

template <typename T>
void forward(const T* ring, int64_t n, const int16_t* fwd, const int64_t* base, int bits, int64_t layers,
             const int64_t* starts, const int64_t* outs, const double* scales, int threads) {
    const int64_t first = starts[0], total = starts[layers];  // the layers may be a run of the ring's (a group)
    const int64_t width = int64_t(1) << bits;
    #pragma omp parallel num_threads(threads)
    {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t j = first + (total - first) * id / nt;
        const int64_t stop = first + (total - first) * (id + 1) / nt;
        int64_t layer = 0;
        while (layer < layers && starts[layer + 1] <= j) layer++;
        while (j < stop) {  // pieces that stay inside one layer and one chunk
            while (starts[layer + 1] <= j) layer++;
            int64_t end = (j | (width - 1)) + 1;
            end = end < starts[layer + 1] ? end : starts[layer + 1];
            end = end < stop ? end : stop;
            T* out = reinterpret_cast<T*>(outs[layer]) + (j - starts[layer]);
            if (end < total && base[end >> bits] + width <= n) prefetch_window(ring + base[end >> bits], width);
            gather_chunk<T>(ring, n, base[j >> bits], width, fwd + j, end - j, static_cast<T>(scales[layer]), out);
            j = end;
        }
    }
}

// The inverse codes of one tile, read from the int16 table (the cached wiring)
struct TableCodes {
    const uint16_t* inv;
    int bits;
    void start() {}
    void finish() {}
    const uint16_t* tile(int64_t s) { return inv + (s << bits); }
};

// slot_src[s]: address of the gradient of the chunk whose tile is slot s (inside a layer's gradient, or a
// copy for chunks that straddle layers), or 0 for a chunk outside the group of layers being differentiated (its
// tile is skipped: the sum runs over the group's copies only, still in ascending order); slot_scale[s]: its layer
// scale. Codes supplies each tile's inverse codes
// (a table, or computed from the hash for the recompute wiring); each thread works on its own copy of it.
template <typename T, typename Codes>
void backward(const int64_t* slot_src, const double* slot_scale, int64_t total, int64_t n, Codes codes, int bits,
              T* out, int threads) {
    const int64_t copies = (total + n - 1) / n;
    const int64_t width = int64_t(1) << bits;
    constexpr int64_t span = 4096;  // ring entries accumulated together: the partial sums stay in L1
    #pragma omp parallel num_threads(threads)
    {
        Codes local = codes;
        local.start();
        #pragma omp for schedule(static)
        for (int64_t k0 = 0; k0 < n; k0 += span) {
            const int64_t k1 = k0 + span < n ? k0 + span : n;
            T acc[span];
            for (int64_t k = 0; k < k1 - k0; k++) acc[k] = 0;
            for (int64_t c = 0; c < copies; c++) {  // ascending copies: the same sum order for any thread count
                const int64_t p0 = c * n + k0;
                const int64_t p1 = c * n + k1 < total ? c * n + k1 : total;
                for (int64_t p = p0; p < p1;) {  // pieces inside one tile: one source chunk
                    int64_t end = (p | (width - 1)) + 1;
                    end = end < p1 ? end : p1;
                    const int64_t next = end < p1 ? end : p0 + n;  // this copy's next tile or the next copy
                    if (next < total && slot_src[next >> bits] != 0)
                        prefetch_window(reinterpret_cast<const T*>(slot_src[next >> bits]), width);
                    const int64_t s = p >> bits;
                    if (slot_src[s] == 0) {  // a chunk of another group: it adds nothing here
                        p = end;
                        continue;
                    }
                    const uint16_t* code = local.tile(s) + (p & (width - 1));
                    accumulate_window<T>(reinterpret_cast<const T*>(slot_src[s]), code, end - p,
                                         static_cast<T>(slot_scale[s]), acc + (p - p0));
                    p = end;
                }
            }
            for (int64_t k = 0; k < k1 - k0; k++) out[k0 + k] = acc[k];
        }
        local.finish();
    }
}

// lowbias32, as keys.hash32 computes it on Python ints and int64 tensors (arithmetic mod 2**32)
inline uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    return x ^ (x >> 16);
}

// wiring._feistel on one value: an unbalanced Feistel network, a bijection on [0, 2**bits)
inline uint32_t feistel(uint32_t x, int bits, const uint32_t* round_keys, int rounds) {
    int lo_width = bits / 2;
    for (int r = 0; r < rounds; r++) {
        const int hi_width = bits - lo_width;
        uint32_t hi = x >> lo_width, lo = x & ((1u << lo_width) - 1u);
        hi ^= hash32(lo ^ round_keys[r]) & ((1u << hi_width) - 1u);
        x = (lo << hi_width) | hi;
        lo_width = hi_width;
    }
    return x;
}

// The int16 tables of every full chunk q < chunks (elementwise.build_element_wiring's torch loop, fused):
// fwd[q*B + r] = rho_q(r) | sign(q*B + r) << 15, and row sigma[q] of inv gets inv[.. + rho_q(r)] = r | sign << 15.
// rho_q's round keys are hash32(q ^ chunk_keys[k]) (wiring.within_chunk_positions); a sign is the top bit of
// hash32(j ^ sign_key) (wiring.sign_bits). Each chunk is written by one thread: the same tables for any count.
// The hashes of a chunk are computed in straight loops over r first (they vectorise), the scatter after.
constexpr int kRounds = 4;  // wiring._FEISTEL_ROUNDS (kernels.element_tables checks it)
constexpr int64_t kMaxWidth = int64_t(1) << 15;  // codes keep 15 bits of offset

void element_tables(int64_t chunks, int bits, const int64_t* chunk_keys, int permute, int reflect,
                    int64_t sign_key, const int64_t* sigma, int16_t* fwd, int16_t* inv, int threads) {
    const int64_t width = int64_t(1) << bits;
    #pragma omp parallel num_threads(threads)
    {
        uint16_t* code = new uint16_t[width];
        uint16_t* sign = new uint16_t[width];
        #pragma omp for schedule(static)
        for (int64_t q = 0; q < chunks; q++) {
            uint32_t keys[kRounds];
            for (int k = 0; k < kRounds; k++) keys[k] = hash32(static_cast<uint32_t>(q ^ chunk_keys[k]));
            const uint32_t first = static_cast<uint32_t>((q * width) ^ sign_key);  // low 32 bits, as the hash takes
            for (int64_t r = 0; r < width; r++) {
                code[r] = static_cast<uint16_t>(permute ? feistel(static_cast<uint32_t>(r), bits, keys, kRounds)
                                                        : static_cast<uint32_t>(r));
                // (q*B + r) ^ key on the low 32 bits: q*B is a multiple of B > r, so the sum is an or
                sign[r] = reflect ? static_cast<uint16_t>((hash32(first ^ static_cast<uint32_t>(r)) >> 31) << 15) : 0;
            }
            if (fwd != nullptr) {  // either table may be skipped (the recompute wiring builds one at a time)
                uint16_t* f = reinterpret_cast<uint16_t*>(fwd) + q * width;
                for (int64_t r = 0; r < width; r++) f[r] = code[r] | sign[r];
            }
            if (inv != nullptr) {
                uint16_t* v = reinterpret_cast<uint16_t*>(inv) + sigma[q] * width;
                for (int64_t r = 0; r < width; r++) v[code[r]] = static_cast<uint16_t>(r) | sign[r];
            }
        }
        delete[] code;
        delete[] sign;
    }
}

// The inverse codes of one tile computed from the hash (the recompute wiring: no T-sized table at all): the tile
// of slot s holds full chunk q = slot_chunk[s]; its codes are rho_q's inverse with the signs, as element_tables
// writes them into inv. The short last chunk's tile (slot == chunks) takes its codes from tail (a few hundred).
struct HashedCodes {
    int bits;
    int64_t chunks;
    const int64_t* chunk_keys;
    int permute, reflect;
    int64_t sign_key;
    const int64_t* slot_chunk;
    const int16_t* tail;
    uint16_t* buffer = nullptr;
    uint16_t* rho = nullptr;
    int64_t cached = -1;
    void start() {
        buffer = new uint16_t[int64_t(1) << bits];
        rho = new uint16_t[int64_t(1) << bits];
    }
    void finish() {
        delete[] buffer;
        delete[] rho;
    }
    const uint16_t* tile(int64_t s) {
        const int64_t width = int64_t(1) << bits;
        if (s == chunks) return reinterpret_cast<const uint16_t*>(tail);
        if (s == cached) return buffer;
        const int64_t q = slot_chunk[s];
        uint32_t keys[kRounds];
        for (int k = 0; k < kRounds; k++) keys[k] = hash32(static_cast<uint32_t>(q ^ chunk_keys[k]));
        const uint32_t first = static_cast<uint32_t>((q * width) ^ sign_key);
        for (int64_t r = 0; r < width; r++)
            rho[r] = static_cast<uint16_t>(permute ? feistel(static_cast<uint32_t>(r), bits, keys, kRounds)
                                                   : static_cast<uint32_t>(r));
        for (int64_t r = 0; r < width; r++) {
            const uint16_t sign = reflect ? static_cast<uint16_t>(
                (hash32(first ^ static_cast<uint32_t>(r)) >> 31) << 15) : 0;
            buffer[rho[r]] = static_cast<uint16_t>(r) | sign;
        }
        cached = s;
        return buffer;
    }
};

}  // namespace

extern "C" {

void modelring_element_tables(int64_t chunks, int bits, const int64_t* chunk_keys, int permute, int reflect,
                              int64_t sign_key, const int64_t* sigma, int16_t* fwd, int16_t* inv, int threads) {
    element_tables(chunks, bits, chunk_keys, permute, reflect, sign_key, sigma, fwd, inv, threads);
}

void modelring_forward_f32(const float* ring, int64_t n, const int16_t* fwd, const int64_t* base, int bits,
                           int64_t layers, const int64_t* starts, const int64_t* outs, const double* scales,
                           int threads) {
    forward<float>(ring, n, fwd, base, bits, layers, starts, outs, scales, threads);
}

void modelring_forward_f64(const double* ring, int64_t n, const int16_t* fwd, const int64_t* base, int bits,
                           int64_t layers, const int64_t* starts, const int64_t* outs, const double* scales,
                           int threads) {
    forward<double>(ring, n, fwd, base, bits, layers, starts, outs, scales, threads);
}

void modelring_backward_f32(const int64_t* slot_src, const double* slot_scale, int64_t total, int64_t n,
                            const int16_t* inv, int bits, float* out, int threads) {
    backward<float>(slot_src, slot_scale, total, n, TableCodes{reinterpret_cast<const uint16_t*>(inv), bits}, bits,
                    out, threads);
}

void modelring_backward_f64(const int64_t* slot_src, const double* slot_scale, int64_t total, int64_t n,
                            const int16_t* inv, int bits, double* out, int threads) {
    backward<double>(slot_src, slot_scale, total, n, TableCodes{reinterpret_cast<const uint16_t*>(inv), bits}, bits,
                     out, threads);
}

// The backward of the recompute wiring: the same sums, the inverse codes computed per tile from the hash
void modelring_backward_hashed_f32(const int64_t* slot_src, const double* slot_scale, int64_t total, int64_t n,
                                   int bits, int64_t chunks, const int64_t* chunk_keys, int permute, int reflect,
                                   int64_t sign_key, const int64_t* slot_chunk, const int16_t* tail, float* out,
                                   int threads) {
    HashedCodes codes{bits, chunks, chunk_keys, permute, reflect, sign_key, slot_chunk, tail};
    backward<float>(slot_src, slot_scale, total, n, codes, bits, out, threads);
}

void modelring_backward_hashed_f64(const int64_t* slot_src, const double* slot_scale, int64_t total, int64_t n,
                                   int bits, int64_t chunks, const int64_t* chunk_keys, int permute, int reflect,
                                   int64_t sign_key, const int64_t* slot_chunk, const int16_t* tail, double* out,
                                   int threads) {
    HashedCodes codes{bits, chunks, chunk_keys, permute, reflect, sign_key, slot_chunk, tail};
    backward<double>(slot_src, slot_scale, total, n, codes, bits, out, threads);
}

}  // extern "C"
