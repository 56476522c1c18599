// Fused element-wise generation for the version-2 wiring (see wiring.py, "Element-wise layout").
//
// Compiled on first use by kernels.py (g++ -O3 -fopenmp, no torch headers: it builds in under a second) and
// called through ctypes with raw pointers. Both loops are gathers: every output element is written by exactly one
// thread and, in the backward, each ring entry sums its copies in ascending copy order whatever the thread count,
// so results are bitwise identical run to run and for any number of threads. No atomics anywhere.
//
// Tables (int16, two bytes per virtual weight each):
//   fwd[j] = rho_q(j mod B) | sign_j << 15     position of weight j inside its chunk's tile, and its sign
//                                              (a part of it, from weight fwd_first on, in the recompute wiring)
//   inv[p] = rho_q^-1(p mod B) | sign << 15    the weight (inside its chunk) that lands on tiled position p
// and per chunk / slot (int64, one per B weights): base[q] = ring entry where chunk q's tile starts,
// start[s] = first weight of the chunk whose tile is slot s. Ring entry of tiled position p is p mod n.
#include <stdint.h>
#include <omp.h>

#include <vector>

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
void forward(const T* ring, int64_t n, const int16_t* fwd, int64_t fwd_first, const int64_t* base, int bits,
             int64_t layers, const int64_t* starts, const int64_t* outs, const double* scales, int threads) {
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
            gather_chunk<T>(ring, n, base[j >> bits], width, fwd + (j - fwd_first), end - j,
                            static_cast<T>(scales[layer]), out);
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
    void prefetch(int64_t s) const { prefetch_window(inv + (s << bits), int64_t(1) << bits); }
};

// The backward of one group of layers (elementwise.gradient_groups): for every ring entry k,
//   out[k] += sum over the group's tiles t, ascending, of scale_t * sign * gradient of the weight on tiled
//             position p = t*B + i with p mod n = k
// (added one term after the other onto out[k]; blocks of entries that no tile reaches are not touched).
// Ascending tiles are ascending copies for every entry. The listed tiles (distinct, in any order: the kernel
// orders them by a counting pass over their range, cheaper than a sort in the caller) are cut into pieces that
// stay inside one block of `span` ring entries and do not wrap around the ring; a counting sort buckets the pieces
// by block, keeping the tile order; each block is then summed by one thread in a small buffer that stays in L1.
// So every entry sums its copies in ascending order whatever the thread count, and the work is the group's
// weights, however many groups a ring has. tile_src[i]: address of the gradient of
// the chunk on tile tiles[i] (inside a layer's gradient, or a copy for chunks that straddle layers; 0: the chunk
// has no gradient and is skipped); tile_scale[i]: its layer scale. Codes supplies each tile's inverse codes (a
// table, or computed from the hash for the recompute wiring); each thread works on its own copy of it.
// fresh: out holds garbage (a new gradient): every entry is written, as if out had been zeros (0 + the terms,
// the same bits), which saves zeroing and re-reading it.
struct Piece {
    int64_t tile;   // index into the sorted tiles
    int64_t at;     // first tiled position p
    int64_t length;
};

// The listed tiles with a gradient (tile_src[i] != 0) in ascending order of tile, with their sources and scales:
// one counting pass over the tiles' range (no comparison sort). Copied into contiguous lists because the sums
// below read them in the sorted order: reading them in place, in random order, cost 10% of the whole backward.
struct SortedTiles {
    std::vector<int64_t> tile, src;
    std::vector<double> scale;
};

inline SortedTiles ascending_tiles(const int32_t* tiles, const int64_t* tile_src, const double* tile_scale,
                                   int64_t count) {
    int64_t low = INT64_MAX, high = -1;
    for (int64_t i = 0; i < count; i++) {
        if (tile_src[i] == 0) continue;
        low = tiles[i] < low ? tiles[i] : low;
        high = tiles[i] > high ? tiles[i] : high;
    }
    SortedTiles sorted;
    if (high < 0) return sorted;
    std::vector<int64_t> at(high - low + 1, -1);
    for (int64_t i = 0; i < count; i++)
        if (tile_src[i] != 0) at[tiles[i] - low] = i;
    for (int64_t i : at) {
        if (i < 0) continue;
        sorted.tile.push_back(tiles[i]);
        sorted.src.push_back(tile_src[i]);
        sorted.scale.push_back(tile_scale[i]);
    }
    return sorted;
}

template <typename F>
void for_each_piece(const int64_t* tiles, int64_t count, int64_t total, int64_t n, int bits, int64_t span, F&& f) {
    const int64_t width = int64_t(1) << bits;
    for (int64_t i = 0; i < count; i++) {
        const int64_t p0 = tiles[i] << bits, p1 = p0 + width < total ? p0 + width : total;
        for (int64_t p = p0; p < p1;) {
            const int64_t k = p % n, block = k / span;
            int64_t length = p1 - p;
            length = length < n - k ? length : n - k;                      // no wrap around the ring's end
            length = length < (block + 1) * span - k ? length : (block + 1) * span - k;  // inside one block
            f(Piece{i, p, length}, block);
            p += length;
        }
    }
}

template <typename T, typename Codes>
void backward(const int32_t* listed_tiles, int64_t listed, const int64_t* listed_src, const double* listed_scale,
              int64_t total, int64_t n, Codes codes, int bits, T* out, int fresh, int threads) {
    constexpr int64_t span = 4096;  // ring entries summed together: the partial sums stay in L1
    const int64_t width = int64_t(1) << bits;
    const int64_t blocks = (n + span - 1) / span;
    const SortedTiles sorted = ascending_tiles(listed_tiles, listed_src, listed_scale, listed);
    const int64_t* tiles = sorted.tile.data();
    const int64_t* tile_src = sorted.src.data();
    const double* tile_scale = sorted.scale.data();
    const int64_t count = static_cast<int64_t>(sorted.tile.size());
    std::vector<int64_t> first(blocks + 1, 0);
    for_each_piece(tiles, count, total, n, bits, span, [&](const Piece&, int64_t block) { first[block + 1]++; });
    for (int64_t b = 0; b < blocks; b++) first[b + 1] += first[b];
    std::vector<Piece> pieces(first[blocks]);
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for_each_piece(tiles, count, total, n, bits, span,
                   [&](const Piece& piece, int64_t block) { pieces[next[block]++] = piece; });
    #pragma omp parallel num_threads(threads)
    {
        Codes local = codes;
        local.start();
        T acc[span];
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t k0 = b * span, k1 = k0 + span < n ? k0 + span : n;
            if (first[b] == first[b + 1]) {  // no tile of the group reaches these entries
                if (fresh)
                    for (int64_t k = k0; k < k1; k++) out[k] = T(0);
                continue;
            }
            for (int64_t k = 0; k < k1 - k0; k++) acc[k] = fresh ? T(0) : out[k0 + k];
            for (int64_t j = first[b]; j < first[b + 1]; j++) {
                const Piece& piece = pieces[j];
                if (j + 2 < first[b + 1]) {  // two pieces ahead: a block of a group holds few
                    prefetch_window(reinterpret_cast<const T*>(tile_src[pieces[j + 2].tile]), width);
                    local.prefetch(tiles[pieces[j + 2].tile]);
                }
                const int64_t t = tiles[piece.tile];
                const uint16_t* code = local.tile(t) + (piece.at - (t << bits));
                accumulate_window<T>(reinterpret_cast<const T*>(tile_src[piece.tile]), code, piece.length,
                                     static_cast<T>(tile_scale[piece.tile]), acc + (piece.at % n - k0));
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

void element_tables(int64_t first, int64_t chunks, int bits, const int64_t* chunk_keys, int permute, int reflect,
                    int64_t sign_key, const int64_t* sigma, int16_t* fwd, int16_t* inv, int threads) {
    const int64_t width = int64_t(1) << bits;
    #pragma omp parallel num_threads(threads)
    {
        uint16_t* code = new uint16_t[width];
        uint16_t* sign = new uint16_t[width];
        #pragma omp for schedule(static)
        for (int64_t q = first; q < first + chunks; q++) {
            uint32_t keys[kRounds];
            for (int k = 0; k < kRounds; k++) keys[k] = hash32(static_cast<uint32_t>(q ^ chunk_keys[k]));
            const uint32_t seed = static_cast<uint32_t>((q * width) ^ sign_key);  // low 32 bits, as the hash takes
            for (int64_t r = 0; r < width; r++) {
                code[r] = static_cast<uint16_t>(permute ? feistel(static_cast<uint32_t>(r), bits, keys, kRounds)
                                                        : static_cast<uint32_t>(r));
                // (q*B + r) ^ key on the low 32 bits: q*B is a multiple of B > r, so the sum is an or
                sign[r] = reflect ? static_cast<uint16_t>((hash32(seed ^ static_cast<uint32_t>(r)) >> 31) << 15) : 0;
            }
            if (fwd != nullptr) {  // either table may be skipped (the recompute wiring's forward builds fwd per group)
                uint16_t* f = reinterpret_cast<uint16_t*>(fwd) + (q - first) * width;  // fwd starts at chunk first
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
    void prefetch(int64_t) const {}  // the codes are computed, not read
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

void modelring_element_tables(int64_t first, int64_t chunks, int bits, const int64_t* chunk_keys, int permute,
                              int reflect, int64_t sign_key, const int64_t* sigma, int16_t* fwd, int16_t* inv,
                              int threads) {
    element_tables(first, chunks, bits, chunk_keys, permute, reflect, sign_key, sigma, fwd, inv, threads);
}

void modelring_forward_f32(const float* ring, int64_t n, const int16_t* fwd, int64_t fwd_first,
                           const int64_t* base, int bits, int64_t layers, const int64_t* starts, const int64_t* outs, const double* scales,
                           int threads) {
    forward<float>(ring, n, fwd, fwd_first, base, bits, layers, starts, outs, scales, threads);
}

void modelring_forward_f64(const double* ring, int64_t n, const int16_t* fwd, int64_t fwd_first,
                           const int64_t* base, int bits, int64_t layers, const int64_t* starts, const int64_t* outs, const double* scales,
                           int threads) {
    forward<double>(ring, n, fwd, fwd_first, base, bits, layers, starts, outs, scales, threads);
}

void modelring_backward_f32(const int32_t* tiles, int64_t count, const int64_t* tile_src, const double* tile_scale,
                            int64_t total, int64_t n, const int16_t* inv, int bits, float* out, int fresh,
                            int threads) {
    backward<float>(tiles, count, tile_src, tile_scale, total, n,
                    TableCodes{reinterpret_cast<const uint16_t*>(inv), bits}, bits, out, fresh, threads);
}

void modelring_backward_f64(const int32_t* tiles, int64_t count, const int64_t* tile_src, const double* tile_scale,
                            int64_t total, int64_t n, const int16_t* inv, int bits, double* out, int fresh,
                            int threads) {
    backward<double>(tiles, count, tile_src, tile_scale, total, n,
                     TableCodes{reinterpret_cast<const uint16_t*>(inv), bits}, bits, out, fresh, threads);
}

// The backward of the recompute wiring: the same sums, the inverse codes computed per tile from the hash
void modelring_backward_hashed_f32(const int32_t* tiles, int64_t count, const int64_t* tile_src,
                                   const double* tile_scale, int64_t total, int64_t n, int bits, int64_t chunks,
                                   const int64_t* chunk_keys, int permute, int reflect, int64_t sign_key,
                                   const int64_t* slot_chunk, const int16_t* tail, float* out, int fresh,
                                   int threads) {
    HashedCodes codes{bits, chunks, chunk_keys, permute, reflect, sign_key, slot_chunk, tail};
    backward<float>(tiles, count, tile_src, tile_scale, total, n, codes, bits, out, fresh, threads);
}

void modelring_backward_hashed_f64(const int32_t* tiles, int64_t count, const int64_t* tile_src,
                                   const double* tile_scale, int64_t total, int64_t n, int bits, int64_t chunks,
                                   const int64_t* chunk_keys, int permute, int reflect, int64_t sign_key,
                                   const int64_t* slot_chunk, const int16_t* tail, double* out, int fresh,
                                   int threads) {
    HashedCodes codes{bits, chunks, chunk_keys, permute, reflect, sign_key, slot_chunk, tail};
    backward<double>(tiles, count, tile_src, tile_scale, total, n, codes, bits, out, fresh, threads);
}

}  // extern "C"
