// Fused selective scan on the CPU: one pass over time per (batch, channel),
// the N states in registers, (batch, channel) pairs spread over threads.
//
//   dt_t = softplus?(delta_t + bias)          h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t + nb_t
//   y_t  = C_t . h_t + D u_t                  out_t = y_t * silu(z_t)
//
// Layouts (prepared in selective_scan.py): u, delta, z (b, d, L); A (d, N);
// B, C time-major (b, g, L, N); nb (b, d, L) [per channel] or (b, d, L, N)
// [per state]. Empty tensors stand for "absent". Backward recomputes the
// states of one (b, d) pair into a thread-local buffer, then runs the adjoint
// recurrence backwards in time. B and C are shared by the channels of a group,
// so their gradients are summed over those channels: the backward works on
// (batch, group, chunk of channels) items and accumulates into one (L, N)
// buffer per item, summed over chunks at the end (a per-channel (b, d, L, N)
// buffer, reduced afterwards, cost more than the recurrence itself).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// exp that GCC can vectorise (the scalar libm call cannot be): 2^k * p(r), |r| <= ln2/2, a degree-6
// polynomial, relative error ~2e-7, about float's own; NaN stays NaN. double keeps std::exp.
inline float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float k = __builtin_nearbyintf(x * 1.44269504088896341f);
  const float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double vexp(double x) { return std::exp(x); }

template <typename T> inline T softplus(T x) { return x <= T(20) ? std::log1p(std::exp(x)) : x; }
template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

struct Dims { int64_t batch, dim, L, N, groups, dpg; };

Dims dims_of(const at::Tensor& u, const at::Tensor& A, const at::Tensor& B) {
  Dims s{u.size(0), u.size(1), u.size(2), A.size(1), B.size(1), 0};
  s.dpg = s.dim / s.groups;
  return s;
}

// Raw pointers to the (contiguous) inputs; nullptr for an absent optional one.
template <typename T>
struct Inputs {
  Dims s;
  const T *u, *dt, *A, *B, *C, *D, *z, *bias, *nb;
  bool nb_per_state;
  Inputs(const at::Tensor& u_, const at::Tensor& dt_, const at::Tensor& A_, const at::Tensor& B_,
         const at::Tensor& C_, const at::Tensor& D_, const at::Tensor& z_, const at::Tensor& bias_,
         const at::Tensor& nb_)
      : s(dims_of(u_, A_, B_)), u(u_.data_ptr<T>()), dt(dt_.data_ptr<T>()), A(A_.data_ptr<T>()),
        B(B_.data_ptr<T>()), C(C_.data_ptr<T>()), D(opt(D_)), z(opt(z_)), bias(opt(bias_)), nb(opt(nb_)),
        nb_per_state(nb_.dim() == 4) {}
  static const T* opt(const at::Tensor& t) { return t.numel() ? t.data_ptr<T>() : nullptr; }

  // One (batch, channel) pair: its channel, its row in (b, d, L) arrays, its A row and B/C groups.
  struct Pair { int64_t d, row; const T *Ad, *Bg, *Cg; };
  Pair pair(int64_t bd) const {
    const int64_t b = bd / s.dim, d = bd % s.dim, g = d / s.dpg;
    const int64_t bc = (b * s.groups + g) * s.L * s.N;
    return {d, bd * s.L, A + d * s.N, B + bc, C + bc};
  }
  T step_size(const Pair& p, int64_t t, bool softplus_on) const {
    const T v = dt[p.row + t] + (bias ? bias[p.d] : T(0));
    return softplus_on ? softplus(v) : v;
  }
};

template <typename T>
void forward_kernel(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                    const at::Tensor& C, const at::Tensor& D, const at::Tensor& z, const at::Tensor& bias,
                    const at::Tensor& nb, bool softplus_on, at::Tensor& out) {
  const Inputs<T> in(u, delta, A, B, C, D, z, bias, nb);
  const Dims s = in.s;
  const T *pu = in.u, *pdt = in.dt, *pD = in.D, *pz = in.z;
  const T *pbias = in.bias, *pnb = in.nb;
  const bool nb_per_state = in.nb_per_state;
  T* py = out.data_ptr<T>();
  at::parallel_for(0, s.batch * s.dim, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> h(s.N), a_row(s.N);
    for (int64_t bd = begin; bd < end; ++bd) {
      const auto p = in.pair(bd);
      const int64_t d = p.d, row = p.row;
      const T *Ad = p.Ad, *Bg = p.Bg, *Cg = p.Cg;
      std::fill(h.begin(), h.end(), T(0));
      for (int64_t t = 0; t < s.L; ++t) {
        const T dt = in.step_size(p, t, softplus_on);
        const T ut = pu[row + t];
        const T du = dt * ut;
        const T* Bt = Bg + t * s.N;
        const T* Ct = Cg + t * s.N;
        const T nbc = (pnb && !nb_per_state) ? pnb[row + t] : T(0);
        const T* nbs = (pnb && nb_per_state) ? pnb + (row + t) * s.N : nullptr;
        T y = 0;
        for (int64_t n = 0; n < s.N; ++n) a_row[n] = vexp(dt * Ad[n]);
        for (int64_t n = 0; n < s.N; ++n) {
          h[n] = a_row[n] * h[n] + du * Bt[n] + nbc + (nbs ? nbs[n] : T(0));
          y += Ct[n] * h[n];
        }
        if (pD) y += pD[d] * ut;
        if (pz) { const T zt = pz[row + t]; y *= zt * sigmoid(zt); }
        py[row + t] = y;
      }
    }
  });
}

template <typename T>
void backward_kernel(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                     const at::Tensor& C, const at::Tensor& D, const at::Tensor& z, const at::Tensor& bias,
                     const at::Tensor& nb, bool softplus_on, const at::Tensor& gout,
                     at::Tensor& gu, at::Tensor& gdelta, at::Tensor& gA_bd, at::Tensor& gB_part,
                     at::Tensor& gC_part, at::Tensor& gD_bd, at::Tensor& gz, at::Tensor& gnb) {
  const Inputs<T> in(u, delta, A, B, C, D, z, bias, nb);
  const Dims s = in.s;
  const T *pu = in.u, *pdt = in.dt, *pD = in.D, *pz = in.z;
  const T *pbias = in.bias, *pnb = in.nb;
  const bool nb_per_state = in.nb_per_state;
  const T* pg = gout.data_ptr<T>();
  T* pgu = gu.data_ptr<T>(); T* pgdt = gdelta.data_ptr<T>(); T* pgA = gA_bd.data_ptr<T>();
  T* pgB = gB_part.data_ptr<T>(); T* pgC = gC_part.data_ptr<T>(); T* pgD = gD_bd.data_ptr<T>();
  const int64_t chunks = gB_part.size(2);  // gB_part, gC_part: (batch, groups, chunks, L, N), zeroed
  T* pgz = pz ? gz.data_ptr<T>() : nullptr;
  T* pgnb = pnb ? gnb.data_ptr<T>() : nullptr;
  at::parallel_for(0, s.batch * s.groups * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> hs(s.L * s.N), ypre(s.L), dts(s.L), r(s.N), gA(s.N);
    for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / (s.groups * chunks), g = (item / chunks) % s.groups, c = item % chunks;
    T* gBacc = pgB + item * s.L * s.N;
    T* gCacc = pgC + item * s.L * s.N;
    const int64_t d_begin = g * s.dpg + c * s.dpg / chunks, d_end = g * s.dpg + (c + 1) * s.dpg / chunks;
    for (int64_t bd = b * s.dim + d_begin; bd < b * s.dim + d_end; ++bd) {
      const auto p = in.pair(bd);
      const int64_t d = p.d, row = p.row;
      const T *Ad = p.Ad, *Bg = p.Bg, *Cg = p.Cg;
      // forward again, keeping every state
      for (int64_t t = 0; t < s.L; ++t) {
        const T dt = in.step_size(p, t, softplus_on);
        dts[t] = dt;
        const T ut = pu[row + t];
        const T nbc = (pnb && !nb_per_state) ? pnb[row + t] : T(0);
        const T* nbs = (pnb && nb_per_state) ? pnb + (row + t) * s.N : nullptr;
        T y = 0;
        for (int64_t n = 0; n < s.N; ++n) {
          const T prev = t ? hs[(t - 1) * s.N + n] : T(0);
          const T h = vexp(dt * Ad[n]) * prev + dt * ut * Bg[t * s.N + n] + nbc + (nbs ? nbs[n] : T(0));
          hs[t * s.N + n] = h;
          y += Cg[t * s.N + n] * h;
        }
        if (pD) y += pD[d] * ut;
        ypre[t] = y;
      }
      std::fill(r.begin(), r.end(), T(0));
      std::fill(gA.begin(), gA.end(), T(0));
      T gD = 0;
      for (int64_t t = s.L - 1; t >= 0; --t) {
        T gy = pg[row + t];
        if (pz) {
          const T zt = pz[row + t], sg = sigmoid(zt);
          pgz[row + t] = gy * ypre[t] * sg * (T(1) + zt * (T(1) - sg));
          gy *= zt * sg;
        }
        const T ut = pu[row + t], dt = dts[t];
        gD += gy * ut;
        T gut = pD ? gy * pD[d] : T(0);
        T gdt = 0, gnbc = 0;
        const T* Bt = Bg + t * s.N;
        const T* Ct = Cg + t * s.N;
        T* gBt = gBacc + t * s.N;
        T* gCt = gCacc + t * s.N;
        for (int64_t n = 0; n < s.N; ++n) {
          const T gh = gy * Ct[n] + r[n];           // dL/dh_t
          const T a = vexp(dt * Ad[n]);
          const T prev = t ? hs[(t - 1) * s.N + n] : T(0);
          gCt[n] += gy * hs[t * s.N + n];
          gBt[n] += gh * dt * ut;
          gut += gh * dt * Bt[n];
          const T glog = gh * prev * a;              // dL/d(dt*A_n)
          gdt += gh * Bt[n] * ut + glog * Ad[n];
          gA[n] += glog * dt;
          if (pnb && nb_per_state) pgnb[(row + t) * s.N + n] = gh;
          gnbc += gh;
          r[n] = a * gh;
        }
        if (pnb && !nb_per_state) pgnb[row + t] = gnbc;
        pgu[row + t] = gut;
        if (softplus_on) gdt *= sigmoid(pdt[row + t] + (pbias ? pbias[d] : T(0)));
        pgdt[row + t] = gdt;
      }
      for (int64_t n = 0; n < s.N; ++n) pgA[bd * s.N + n] = gA[n];
      pgD[bd] = gD;
    }
    }
  });
}

at::Tensor forward(at::Tensor u, at::Tensor delta, at::Tensor A, at::Tensor B, at::Tensor C, at::Tensor D,
                   at::Tensor z, at::Tensor bias, at::Tensor nb, bool softplus_on) {
  auto out = at::empty_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "irstd_selective_scan_fwd", [&] {
    forward_kernel<scalar_t>(u, delta, A, B, C, D, z, bias, nb, softplus_on, out);
  });
  return out;
}

std::vector<at::Tensor> backward(at::Tensor u, at::Tensor delta, at::Tensor A, at::Tensor B, at::Tensor C,
                                 at::Tensor D, at::Tensor z, at::Tensor bias, at::Tensor nb, bool softplus_on,
                                 at::Tensor gout) {
  const auto bsz = u.size(0), dim = u.size(1), L = u.size(2), N = A.size(1);
  auto gu = at::empty_like(u), gdelta = at::empty_like(u);
  auto gA_bd = at::empty({bsz, dim, N}, u.options());
  const int64_t groups = B.size(1), dpg = dim / groups;
  // enough (batch, group, chunk) items to keep every thread busy, few enough to keep the buffers small
  const int64_t want = 4 * at::get_num_threads(), bg = bsz * groups;
  const int64_t chunks = std::min<int64_t>(dpg, std::max<int64_t>(1, (want + bg - 1) / bg));
  auto gB_part = at::zeros({bsz, groups, chunks, L, N}, u.options());
  auto gC_part = at::zeros({bsz, groups, chunks, L, N}, u.options());
  auto gD_bd = at::empty({bsz, dim}, u.options());
  auto gz = z.numel() ? at::empty_like(z) : at::empty({0}, u.options());
  auto gnb = nb.numel() ? at::empty_like(nb) : at::empty({0}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "irstd_selective_scan_bwd", [&] {
    backward_kernel<scalar_t>(u, delta, A, B, C, D, z, bias, nb, softplus_on, gout,
                              gu, gdelta, gA_bd, gB_part, gC_part, gD_bd, gz, gnb);
  });
  // (batch, groups, L, N)
  return {gu, gdelta, gA_bd, gB_part.sum(2), gC_part.sum(2), gD_bd, gz, gnb};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused selective scan forward (CPU)");
  m.def("backward", &backward, "fused selective scan backward (CPU)");
}
