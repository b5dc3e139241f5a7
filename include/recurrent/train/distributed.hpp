// recurrent — train/distributed.hpp: data-parallel training over MPI.
//
// Optional, like the weight files: needs an MPI implementation (mpi.h, and linking MPI's C
// library; CMake: find_package(MPI), MPI::MPI_CXX), and is not in the umbrella header.
//
// Data parallelism: every process holds the whole model, runs forward and backward on its share
// of the batch, and the gradients are averaged over the processes before every process takes
// the same optimizer step — so the processes stay identical, step after step:
//
//     MPI_Init(&argc, &argv);
//     recurrent::DataParallel<float> dp(params);      // params: the model's ParameterList
//     dp.broadcastParameters();                        // every process starts from rank 0's model
//     auto mine = recurrent::shareOfBatch(lengths, dp.rank(), dp.size());
//     ...  forward and backward on the sequences `mine` (selectSequences) ...
//     dp.averageGradients(localCount);                 // weighted by each process's share
//     adam.step();                                     // the same step on every process
//
// The average is weighted so that it is the gradient of the whole batch: a loss that is a mean
// over a process's n_r terms (mseLoss) has gradient g_r, the whole batch's mean over Σ n_r terms
// has gradient Σ n_r g_r / Σ n_r. Each process passes its n_r; with equal weights (the default,
// 1) it is the plain mean of the processes' gradients, as DDP and Horovod take it.
//
// The gradients travel in buckets of whole tensors, about bucketBytes each, in the reverse of the
// list's order (the order in which backward completes them). A bucket is summed the way a ring
// all-reduce moves it, 2 (N − 1) / N of its bytes in and out of each process, but in a fixed
// order: each process sends every other process that process's slice of the bucket
// (MPI_Ialltoallv), sums the N copies of its own slice in rank order, and the sums are gathered
// back (MPI_Iallgatherv). An element's sum is therefore ((g_0 + g_1) + g_2) + ... whatever the
// bucket sizes, and every process receives the same bits. The buckets can be sent while backward
// is still running (begin, ready, finish; or connect() a Stack, which reports each layer as its
// gradients are complete); every process starts them in the same order, bucket 0 first,
// whatever order it reports them in.
//
// Where every process of the communicator runs on one machine, the buckets need not travel as
// messages at all (Transport::Automatic): each process packs its buckets into memory the
// processes share (an MPI shared-memory window), sums its slice of each bucket straight from the
// others' packed copies, in the same rank order, and reads the others' sums from where they
// wrote them. The same bits as the messages give, with no copy through the kernel.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/mpi.hpp>
#include <recurrent/layers/stack.hpp>
#include <recurrent/train/batch_share.hpp>
#include <recurrent/train/parameter_list.hpp>

#include <mpi.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {

/// Thrown when an MPI call returns an error; the message names the call and MPI's description.
class MpiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How DataParallel moves the gradients between the processes.
enum class Transport {
  /// Through memory the processes share (an MPI-3 shared-memory window) where every process of
  /// the communicator runs on one machine, as messages otherwise.
  Automatic,
  /// As messages (MPI_Ialltoallv and MPI_Iallgatherv), wherever the processes run.
  Messages
};

namespace detail {
inline void mpiCheck(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw MpiError(std::string("recurrent: ") + call +
                 " failed: " + std::string(text, static_cast<std::size_t>(length)));
}
}  // namespace detail

/// DataParallel<Scalar>: broadcasts the parameters of a ParameterList and averages its gradients
/// over the processes of an MPI communicator (see the top of this file).
///
/// The constructor is collective (every process of `comm` makes one, with lists of the same
/// tensors, names and shapes, and the same bucketBytes and transport); so are
/// broadcastParameters(), begin() and finish(), which every process calls in the same order. It
/// keeps a duplicate of `comm` of its own, whose errors are returned and thrown as MpiError instead
/// of aborting.
///
/// Errors are of two kinds. What can differ between the processes — the lists, the weights —
/// is checked collectively: every process throws, together, and nothing is changed. What is a
/// call out of order or an argument the caller gets the same on every process (a root out of
/// range, a tensor resized since construction) throws on the process that sees it, before it
/// communicates; if the processes could then disagree, the program should end with MPI_Abort.
template <typename Scalar_>
class DataParallel {
 public:
  using Scalar = Scalar_;  ///< float or double, as the list's
  /// The default bucket size: large enough that a bucket's time is its bytes, not its latency.
  static constexpr std::size_t kDefaultBucketBytes = std::size_t(4) << 20;

  /// Over the tensors of `params` (which must outlive this object), in buckets of about
  /// `bucketBytes` (a tensor is never split; at least one tensor a bucket), moved by `transport`
  /// (the results are the same bits either way). Throws std::invalid_argument when MPI is not
  /// initialised or `comm` is null (on the process that calls it), and, on every process, when
  /// any process's list is empty or its bucketBytes 0, or the processes' lists differ (tensor
  /// count, names, shapes, scalar type, bucket size or transport; checked once, here, with one
  /// small MPI_Allreduce).
  explicit DataParallel(const ParameterList<Scalar>& params, MPI_Comm comm = MPI_COMM_WORLD,
                        std::size_t bucketBytes = kDefaultBucketBytes,
                        Transport transport = Transport::Automatic)
      : m_params(&params) {
    if (!detail::mpiRunning()) {
      detail::fail(
          "DataParallel: MPI is not initialised (call MPI_Init first), or already "
          "finalised");
    }
    if (comm == MPI_COMM_NULL) detail::fail("DataParallel: the communicator is MPI_COMM_NULL");
    detail::mpiCheck(MPI_Comm_dup(comm, &m_comm), "MPI_Comm_dup");
    try {
      MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN);
      MPI_Comm_rank(m_comm, &m_rank);
      MPI_Comm_size(m_comm, &m_size);
      std::string refused;
      if (params.size() == 0) {
        refused = "the parameter list is empty";
      } else if (bucketBytes == 0) {
        refused = "bucketBytes must be at least 1, got 0";
      } else {
        refused = makeBuckets(bucketBytes);
      }
      checkSameLists(bucketBytes, transport, refused);
      makeBuffers(transport);
    } catch (...) {
      freeWindow();
      MPI_Comm_free(&m_comm);
      throw;
    }
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  /// Waits for an average still in flight (a collective cannot be cancelled; the other
  /// processes must have started the same buckets, or this waits for ever) and frees the
  /// shared-memory window and the communicator, which is collective too: every process destroys its
  /// DataParallel, before MPI_Finalize (after it, nothing is freed).
  ~DataParallel() {
    if (!detail::mpiRunning()) return;
    if (m_active) {
      MPI_Waitall(static_cast<int>(m_started), m_scatters.data(), MPI_STATUSES_IGNORE);
      MPI_Wait(&m_weightRequest, MPI_STATUS_IGNORE);
    }
    freeWindow();
    MPI_Comm_free(&m_comm);
  }

  /// This process's rank in the communicator.
  int rank() const { return m_rank; }
  /// The number of processes.
  int size() const { return m_size; }
  /// The number of buckets.
  std::size_t numBuckets() const { return m_buckets.size(); }
  /// The list's entries (indices into the ParameterList) in bucket k < numBuckets(), in the
  /// order they are packed.
  const std::vector<std::size_t>& bucketEntries(std::size_t k) const {
    if (k >= m_buckets.size()) {
      detail::fail("DataParallel::bucketEntries: k must be in 0..", m_buckets.size() - 1, ", got ",
                   k);
    }
    return m_buckets[k].entries;
  }
  /// The buckets already sent in the average in flight (0 when none is).
  std::size_t bucketsSent() const { return m_active ? m_started : 0; }
  /// Whether the gradients move through shared memory (Transport::Automatic, with every process
  /// on this machine and more than one of them) rather than as messages.
  bool sharesMemory() const { return m_window != MPI_WIN_NULL; }

  /// Sets every parameter to rank `root`'s values (MPI_Bcast, bucket by bucket). Throws unless
  /// 0 <= root < size(), no average is in flight and no tensor changed its shape.
  void broadcastParameters(int root = 0) {
    if (root < 0 || root >= m_size) {
      detail::fail("DataParallel::broadcastParameters: root must be in 0..", m_size - 1, ", got ",
                   root);
    }
    checkIdle("DataParallel::broadcastParameters");
    checkUnchanged("DataParallel::broadcastParameters");
    for (const Bucket& bucket : m_buckets) {
      Scalar* buffer = packed() + bucket.offset;
      if (m_rank == root) pack(bucket, buffer, false);
      detail::mpiCheck(MPI_Bcast(buffer, bucket.count, detail::mpiType<Scalar>(), root, m_comm),
                       "MPI_Bcast");
      if (m_rank != root) unpack(bucket, buffer, false, 1.0);
    }
  }

  /// Replaces every gradient by the weighted mean over the processes, Σ w_r g_r / Σ w_r, where
  /// w_r is each process's `weight` (its count of loss terms, or 1 for the plain mean). Blocks
  /// until done: begin(weight), then finish().
  void averageGradients(double weight = 1) {
    begin(weight);
    finish();
  }

  /// Starts an average with this process's `weight` (its count of loss terms; finite and >= 0 on
  /// every process, with a positive sum, or finish() throws on every process): call before
  /// backward, report gradients with ready() as they are complete (each entry at most once; one
  /// backward per average), and finish() after backward. Throws if an average is already in
  /// flight or a tensor changed its shape.
  void begin(double weight = 1) {
    checkIdle("DataParallel::begin");
    checkUnchanged("DataParallel::begin");
    // A weight that is not finite and >= 0 travels as NaN, so that every process refuses it.
    m_weight =
        std::isfinite(weight) && weight >= 0 ? weight : std::numeric_limits<double>::quiet_NaN();
    m_badWeight = std::isnan(m_weight) ? weight : 0;
    std::fill(m_ready.begin(), m_ready.end(), char(0));
    for (Bucket& bucket : m_buckets) bucket.pending = bucket.entries.size();
    m_started = 0;
    detail::mpiCheck(MPI_Iallgather(&m_weight, 1, MPI_DOUBLE, m_weights.data(), 1, MPI_DOUBLE,
                                    m_comm, &m_weightRequest),
                     "MPI_Iallgather");
    m_active = true;
  }

  /// Reports that the gradients of entries [first, last) of the list are complete. Every bucket
  /// whose gradients are then all complete, and all buckets before it, is sent. Throws unless
  /// 0 <= first <= last <= the list's size, or if an entry was reported before in this average.
  void ready(std::size_t first, std::size_t last) {
    checkActive("DataParallel::ready");
    if (first > last || last > m_ready.size()) {
      detail::fail("DataParallel::ready: entries [first, last) must be within [0, ", m_ready.size(),
                   "), got [", first, ", ", last, ")");
    }
    for (std::size_t k = first; k < last; ++k) report(k);
    startReady();
  }
  /// Reports the gradients of every entry whose name starts with `prefix` as complete ("fc."
  /// for a Linear added as "fc."). Throws if none does, or if one was reported before.
  void ready(const std::string& prefix) {
    checkActive("DataParallel::ready");
    bool any = false;
    for (std::size_t k = 0; k < m_ready.size(); ++k) {
      if ((*m_params)[k].name.compare(0, prefix.size(), prefix) == 0) {
        report(k);
        any = true;
      }
    }
    if (!any) detail::fail("DataParallel::ready: no entry of the list starts with '", prefix, "'");
    startReady();
  }

  /// Completes the average begun by begin(): sends what is not yet sent, waits for every bucket
  /// and writes the averaged gradients. Throws MpiError if MPI fails, and, on every process with
  /// the gradients unchanged, std::invalid_argument if a process's weight was not finite and
  /// >= 0 or the weights sum to zero.
  void finish() {
    checkActive("DataParallel::finish");
    if (m_size == 1) {  // the average of one: the gradients as they are (g·w / w would round)
      m_active = false;
      detail::mpiCheck(MPI_Wait(&m_weightRequest, MPI_STATUS_IGNORE), "MPI_Iallgather (weights)");
      checkWeights();
      return;
    }
    for (std::size_t k = 0; k < m_ready.size(); ++k) {
      if (m_ready[k] == 0) markReady(k);
    }
    startReady();
    m_active = false;
    if (sharesMemory()) {
      finishShared();
      return;
    }
    // Each bucket's slices, gathered from every process by its alltoall, are summed here in rank
    // order, and the sums gathered back; the collectives start in bucket order on every process.
    int scattered = MPI_SUCCESS, gathered = MPI_SUCCESS;
    for (std::size_t q = 0; q < m_buckets.size(); ++q) {
      const int code = MPI_Wait(&m_scatters[q], MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS && scattered == MPI_SUCCESS) scattered = code;
      if (scattered != MPI_SUCCESS) continue;
      sumSlices(m_buckets[q]);
      const int started = MPI_Iallgatherv(MPI_IN_PLACE, 0, detail::mpiType<Scalar>(),
                                          m_buffer.data() + m_buckets[q].offset,
                                          m_buckets[q].counts.data(), m_buckets[q].displs.data(),
                                          detail::mpiType<Scalar>(), m_comm, &m_gathers[q]);
      if (started != MPI_SUCCESS) scattered = started;
    }
    if (scattered == MPI_SUCCESS) {
      gathered =
          MPI_Waitall(static_cast<int>(m_gathers.size()), m_gathers.data(), MPI_STATUSES_IGNORE);
    }
    const int weighted = MPI_Wait(&m_weightRequest, MPI_STATUS_IGNORE);
    m_started = 0;
    detail::mpiCheck(scattered, "MPI_Ialltoallv (gradients)");
    detail::mpiCheck(gathered, "MPI_Iallgatherv (gradients)");
    detail::mpiCheck(weighted, "MPI_Iallgather (weights)");
    const double total = checkWeights();
    for (const Bucket& bucket : m_buckets) {
      unpack(bucket, m_buffer.data() + bucket.offset, true, total);
    }
  }

  /// Whether an average has begun and not finished.
  bool inProgress() const { return m_active; }

  /// Has `stack`'s backward report each of its layers, as soon as its gradients are complete,
  /// so that they travel while the layers below are computed. Every tensor of the stack must be
  /// in the list (found by identity, not by name; throws naming the first one that is not). The
  /// stack keeps the hook, replacing any other, until disconnect(stack): this object must
  /// outlive that.
  template <typename Cell>
  void connect(Stack<Cell>& stack) {
    std::vector<std::vector<std::size_t>> layers(static_cast<std::size_t>(stack.numLayers()));
    for (Eigen::Index l = 0; l < stack.numLayers(); ++l) {
      for (Eigen::Index d = 0; d < stack.numDirections(); ++d) {
        stack.cell(l, d).parameters().forEach([&](const char* name, auto& tensor) {
          const TensorHandle<Scalar> handle(tensor);
          for (std::size_t k = 0; k < m_params->size(); ++k) {
            if ((*m_params)[k].value.sameObject(handle)) {
              layers[static_cast<std::size_t>(l)].push_back(k);
              return;
            }
          }
          detail::fail("DataParallel::connect: the stack's ", name, " of layer ", l,
                       stack.reverse() || d == 1 ? " (reverse)" : "",
                       " is not in the parameter list");
        });
      }
    }
    stack.onLayerGradients([this, layers = std::move(layers)](Eigen::Index layer) {
      if (!m_active) return;
      for (std::size_t k : layers[static_cast<std::size_t>(layer)]) report(k);
      startReady();
    });
  }
  /// Removes the hook connect() installed.
  template <typename Cell>
  static void disconnect(Stack<Cell>& stack) {
    stack.onLayerGradients(nullptr);
  }

 private:
  using Bucket = detail::Bucket;

  /// Groups the entries into buckets; returns why it cannot (empty: it can).
  std::string makeBuckets(std::size_t bucketBytes) {
    const std::size_t n = m_params->size();
    std::vector<Eigen::Index> sizes;
    for (const auto& e : *m_params) {
      m_shapes.push_back({e.value.rows(), e.value.cols()});
      sizes.push_back(e.value.size());
    }
    Eigen::Index numel = 0, sliceNumel = 0;
    std::string refused = detail::makeBuckets(sizes, bucketBytes / sizeof(Scalar), m_rank, m_size,
                                              m_buckets, numel, sliceNumel);
    if (!refused.empty()) return refused;
    m_numel = numel;
    m_sliceNumel = sliceNumel;
    m_scatters.assign(m_buckets.size(), MPI_REQUEST_NULL);
    m_gathers.assign(m_buckets.size(), MPI_REQUEST_NULL);
    m_weights.assign(static_cast<std::size_t>(m_size), 0.0);
    m_ready.assign(n, char(0));
    m_entryBucket.assign(n, 0);
    for (std::size_t q = 0; q < m_buckets.size(); ++q) {
      for (std::size_t k : m_buckets[q].entries) m_entryBucket[k] = q;
    }
    return {};
  }

  /// One fingerprint of the list's layout and whether this process refuses (`refused` non-empty);
  /// equal on every process and none refusing, or every process throws.
  void checkSameLists(std::size_t bucketBytes, Transport transport, const std::string& refused) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    const std::uint64_t header[] = {sizeof(Scalar), m_params->size(), bucketBytes,
                                    static_cast<std::uint64_t>(transport)};
    h = detail::fingerprint(h, header, sizeof header);
    for (const auto& e : *m_params) {
      h = detail::fingerprint(h, e.name.data(), e.name.size() + 1);
      const std::int64_t shape[] = {e.value.rank(), e.value.rows(), e.value.cols()};
      h = detail::fingerprint(h, shape, sizeof shape);
    }
    // max(h) == h and max(~h) == ~h on every process exactly when all the h are equal.
    std::uint64_t local[] = {h, ~h, refused.empty() ? 0u : 1u}, all[3] = {0, 0, 0};
    detail::mpiCheck(MPI_Allreduce(local, all, 3, MPI_UINT64_T, MPI_MAX, m_comm), "MPI_Allreduce");
    if (!refused.empty()) detail::fail("DataParallel: ", refused);
    if (all[2] != 0) detail::fail("DataParallel: another process refused its parameter list");
    if (all[0] != h || all[1] != ~h) {
      detail::fail(
          "DataParallel: the processes' parameter lists differ (their tensors' count, "
          "names and shapes, the scalar type, bucketBytes and the transport must be the same "
          "on every process); this is rank ",
          m_rank, " of ", m_size, " with ", m_params->size(), " tensors, ", m_params->numel(),
          " scalars");
    }
  }

  /// The buffers the transport needs (collective). Shared memory: every process's segment of
  /// one window holds its packed buckets (m_numel scalars), then its sums of its slice of each
  /// bucket, bucket after bucket; every process maps every segment. Messages: m_buffer holds
  /// the packed buckets, then the sums in place; m_slices each process's copies of this one's
  /// slices. Where the window cannot be made on every process (no shared-memory support in the
  /// MPI library, say), every process falls back to messages, together. Each process writes its
  /// buffers once here: the pages are then mapped, and the first average does not pay for them
  /// (a page's first write costs several times what averaging its bytes does).
  void makeBuffers(Transport transport) {
    if (transport == Transport::Automatic && m_size > 1) {
      MPI_Comm node = MPI_COMM_NULL;
      detail::mpiCheck(MPI_Comm_split_type(m_comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
                       "MPI_Comm_split_type");
      MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
      int nodeSize = 0;
      MPI_Comm_size(node, &nodeSize);
      // The same verdict on every process: the node of each holds all of them, or none does.
      if (nodeSize == m_size) makeWindow(node);
      MPI_Comm_free(&node);
      if (sharesMemory()) return;
    }
    m_buffer.setZero(m_numel);
    m_slices.setZero(m_sliceNumel);
  }
  /// Makes the window on `node` (the processes of m_comm, in the same rank order: the split keeps
  /// it) and maps every segment, or leaves m_window null on every process. Each step's success
  /// is agreed on m_comm before the next collective, so that no process waits in a collective
  /// the others have left.
  void makeWindow(MPI_Comm node) {
    const auto N = static_cast<std::size_t>(m_size);
    m_sumOffsets.assign(m_buckets.size() * N, 0);
    std::vector<Eigen::Index> end(N, m_numel);  // each process's segment, so far
    for (std::size_t q = 0; q < m_buckets.size(); ++q) {
      for (std::size_t r = 0; r < N; ++r) {
        m_sumOffsets[q * N + r] = end[r];
        end[r] += m_buckets[q].counts[r];
      }
    }
    MPI_Info info = MPI_INFO_NULL;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");  // each segment near its process
    void* base = nullptr;
    const auto me = static_cast<std::size_t>(m_rank);
    const auto bytes = static_cast<MPI_Aint>(end[me] * Eigen::Index(sizeof(Scalar)));
    MPI_Win window = MPI_WIN_NULL;
    int code = MPI_Win_allocate_shared(bytes, static_cast<int>(sizeof(Scalar)), info, node, &base,
                                       &window);
    MPI_Info_free(&info);
    if (!everyProcess(code == MPI_SUCCESS)) {
      // A window some process could not make cannot be freed collectively: it is left as it is.
      return;
    }
    MPI_Win_set_errhandler(window, MPI_ERRORS_RETURN);
    m_segments.assign(N, nullptr);
    for (std::size_t r = 0; r < N && code == MPI_SUCCESS; ++r) {
      MPI_Aint size = 0;
      int unit = 0;
      code = MPI_Win_shared_query(window, static_cast<int>(r), &size, &unit, &m_segments[r]);
    }
    // One passive epoch for the window's life: MPI_Win_sync then orders this process's stores
    // and loads in the segments around the barriers that tell the processes they are done.
    if (code == MPI_SUCCESS) code = MPI_Win_lock_all(MPI_MODE_NOCHECK, window);
    const bool locked = code == MPI_SUCCESS;
    if (locked) {
      Scalar* own = segment(me);
      std::fill(own, own + end[me], Scalar(0));
      MPI_Win_sync(window);
    }
    if (!everyProcess(locked)) {
      if (locked) MPI_Win_unlock_all(window);
      MPI_Win_free(&window);
      return;
    }
    m_window = window;
    // A page another process wrote still has to be mapped here on its first read: read one
    // scalar of each page of every segment (everyProcess() was the barrier: all are written).
    MPI_Win_sync(m_window);
    constexpr auto kStride = Eigen::Index(4096 / sizeof(Scalar));
    Scalar touched = 0;
    for (std::size_t r = 0; r < N; ++r) {
      for (Eigen::Index i = 0; i < end[r]; i += kStride) touched += segment(r)[i];
    }
    const volatile Scalar kept = touched;  // so that the reads are not optimised away
    static_cast<void>(kept);
  }
  /// Whether `ok` holds on every process of m_comm (collective; MPI_Allreduce of the flags).
  /// Throws MpiError, on the processes where it fails, if the reduction itself fails.
  bool everyProcess(bool ok) const {
    int mine = ok ? 1 : 0, all = 0;
    detail::mpiCheck(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, m_comm), "MPI_Allreduce");
    return all == 1;
  }
  void freeWindow() {
    if (m_window == MPI_WIN_NULL) return;
    MPI_Win_unlock_all(m_window);
    MPI_Win_free(&m_window);
    m_window = MPI_WIN_NULL;
  }
  /// Where this process packs its buckets.
  Scalar* packed() {
    return sharesMemory() ? segment(static_cast<std::size_t>(m_rank)) : m_buffer.data();
  }

  void checkIdle(const char* where) const {
    if (m_active) detail::fail(where, ": an average is in flight (begin() without finish())");
  }
  void checkActive(const char* where) const {
    if (!m_active) detail::fail(where, ": no average is in flight (call begin() first)");
  }
  /// Throws unless every tensor and its gradient have the shapes the buckets were made for.
  void checkUnchanged(const char* where) const {
    if (m_params->size() != m_shapes.size()) {
      detail::fail(where, ": the list must hold the ", m_shapes.size(),
                   " tensors the buckets were made for, got ", m_params->size());
    }
    for (std::size_t k = 0; k < m_shapes.size(); ++k) {
      const auto& e = (*m_params)[k];
      const auto& [rows, cols] = m_shapes[k];
      for (const auto* t : {&e.value, &e.gradient}) {
        if (t->rows() != rows || t->cols() != cols) {
          detail::fail(where, ": ", e.name, t == &e.value ? "" : "'s gradient", " must be ", rows,
                       " x ", cols, " as when the buckets were made, got ", t->rows(), " x ",
                       t->cols());
        }
      }
    }
  }

  /// The sum of the gathered weights (detail::sumWeights): the same verdict on every process.
  double checkWeights() const { return detail::sumWeights(m_weights, m_rank, m_badWeight); }

  /// An entry reported by the caller: once per average.
  void report(std::size_t k) {
    if (m_ready[k] != 0) {
      detail::fail("DataParallel::ready: ", (*m_params)[k].name,
                   " was reported twice in one average (one backward per begin() and finish())");
    }
    markReady(k);
  }
  void markReady(std::size_t k) {
    m_ready[k] = 1;
    --m_buckets[m_entryBucket[k]].pending;
  }
  /// Sends, in bucket order, every bucket whose entries are all ready: each process's slice of
  /// it to that process (MPI_Ialltoallv); then lets MPI progress the ones in flight.
  void startReady() {
    if (m_size == 1) return;  // nothing to send: finish() keeps the gradients as they are
    while (m_started < m_buckets.size() && m_buckets[m_started].pending == 0) {
      const Bucket& bucket = m_buckets[m_started];
      Scalar* buffer = packed() + bucket.offset;
      pack(bucket, buffer, true);
      if (sharesMemory()) {
        // Packed: the barrier, once every process has passed it, lets them read this bucket.
        MPI_Win_sync(m_window);
        detail::mpiCheck(MPI_Ibarrier(m_comm, &m_scatters[m_started]), "MPI_Ibarrier");
        ++m_started;
        continue;
      }
      detail::mpiCheck(
          MPI_Ialltoallv(buffer, bucket.counts.data(), bucket.displs.data(),
                         detail::mpiType<Scalar>(), m_slices.data() + bucket.gatherOffset,
                         bucket.mineCounts.data(), bucket.mineDispls.data(),
                         detail::mpiType<Scalar>(), m_comm, &m_scatters[m_started]),
          "MPI_Ialltoallv");
      ++m_started;
    }
    if (m_started > 0) {
      int done = 0;
      MPI_Testall(static_cast<int>(m_started), m_scatters.data(), &done, MPI_STATUSES_IGNORE);
    }
  }
  /// This process's slice of `bucket`: the sum of every process's values, in rank order (the
  /// same order whatever the buckets, on every process), into its place in m_buffer.
  void sumSlices(const Bucket& bucket) {
    const Eigen::Index mine = bucket.counts[static_cast<std::size_t>(m_rank)];
    const Scalar* in = m_slices.data() + bucket.gatherOffset;
    Scalar* out = m_buffer.data() + bucket.offset + bucket.displs[static_cast<std::size_t>(m_rank)];
    sumInRankOrder([&](std::size_t r) { return in + Eigen::Index(r) * mine; }, mine, out);
  }
  /// out[i] = ((part(0)[i] + part(1)[i]) + part(2)[i]) + ... for i < n, part(r) being process
  /// r's copy: the one order both transports sum in, so that they give the same bits. In blocks
  /// that stay in L1 while the processes' copies are added.
  template <typename Part>
  void sumInRankOrder(Part part, Eigen::Index n, Scalar* out) const {
    constexpr Eigen::Index kBlock = 2048;
    for (Eigen::Index i0 = 0; i0 < n; i0 += kBlock) {
      const Eigen::Index len = std::min(kBlock, n - i0);
      std::copy(part(0) + i0, part(0) + i0 + len, out + i0);
      for (std::size_t r = 1; r < static_cast<std::size_t>(m_size); ++r) {
        const Scalar* p = part(r) + i0;
        for (Eigen::Index i = 0; i < len; ++i) out[i0 + i] += p[i];
      }
    }
  }

  /// finish() through shared memory: each bucket, once every process has packed it, has this
  /// process's slice summed; after a barrier (every sum written) the gradients are read from the
  /// sums. The next average's writes wait for this one's reads: a process packs again only after
  /// the barrier (nobody reads its packed copies any more), and writes its sums again only when
  /// every process has packed that bucket again (has finished reading the sums of this one).
  void finishShared() {
    int code = MPI_SUCCESS;
    for (std::size_t q = 0; q < m_buckets.size(); ++q) {
      const int waited = MPI_Wait(&m_scatters[q], MPI_STATUS_IGNORE);
      if (waited != MPI_SUCCESS && code == MPI_SUCCESS) code = waited;
      if (code != MPI_SUCCESS) continue;
      MPI_Win_sync(m_window);
      sumShared(q);
    }
    if (code == MPI_SUCCESS) {
      MPI_Win_sync(m_window);
      code = MPI_Barrier(m_comm);
      MPI_Win_sync(m_window);
    }
    const int weighted = MPI_Wait(&m_weightRequest, MPI_STATUS_IGNORE);
    m_started = 0;
    detail::mpiCheck(code, "MPI_Ibarrier or MPI_Barrier (gradients)");
    detail::mpiCheck(weighted, "MPI_Iallgather (weights)");
    const double total = checkWeights();
    for (std::size_t q = 0; q < m_buckets.size(); ++q) unpackShared(q, total);
  }
  /// This process's slice of bucket q: the sum of every process's packed values, in rank order
  /// (sumInRankOrder, as sumSlices() sums), into its segment.
  void sumShared(std::size_t q) {
    const Bucket& bucket = m_buckets[q];
    const auto me = static_cast<std::size_t>(m_rank);
    const Eigen::Index at = bucket.offset + bucket.displs[me];
    Scalar* out = segment(me) + m_sumOffsets[q * static_cast<std::size_t>(m_size) + me];
    sumInRankOrder([&](std::size_t r) { return segment(r) + at; }, bucket.counts[me], out);
  }
  /// Writes bucket q's sums, from the segments that hold them, divided by `divisor`, to its
  /// gradients.
  void unpackShared(std::size_t q, double divisor) {
    using Flat = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
    using ConstFlat = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
    const Bucket& bucket = m_buckets[q];
    const auto N = static_cast<std::size_t>(m_size);
    const auto d = static_cast<Scalar>(divisor);
    Eigen::Index at = 0;  // in the bucket
    std::size_t r = 0;    // the process whose slice holds `at`
    for (std::size_t k : bucket.entries) {
      const auto& g = (*m_params)[k].gradient;
      Scalar* out = g.data();
      for (Eigen::Index left = g.size(); left > 0;) {
        while (at >= Eigen::Index(bucket.displs[r]) + bucket.counts[r]) ++r;
        const Eigen::Index inSlice = at - bucket.displs[r];
        const Eigen::Index n = std::min(left, Eigen::Index(bucket.counts[r]) - inSlice);
        Flat(out, n) = ConstFlat(segment(r) + m_sumOffsets[q * N + r] + inSlice, n) / d;
        out += n;
        at += n;
        left -= n;
      }
    }
  }
  Scalar* segment(std::size_t r) const { return static_cast<Scalar*>(m_segments[r]); }

  /// Copies the bucket's parameters (or its gradients times this process's weight) to `buffer`.
  /// A product or quotient by 1 is exact, so the parameters pass unchanged.
  void pack(const Bucket& bucket, Scalar* buffer, bool gradients) const {
    const auto weight = static_cast<Scalar>(gradients ? m_weight : 1.0);
    for (std::size_t k : bucket.entries) {
      const auto& e = (*m_params)[k];
      const auto& t = gradients ? e.gradient : e.value;
      auto out = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>(buffer, t.size());
      if (weight == 0) {
        out.setZero();  // no share of the batch: nothing, not even a NaN, reaches the others
      } else {
        out = t.array() * weight;
      }
      buffer += t.size();
    }
  }
  /// Writes `buffer` divided by `divisor` back to the bucket's gradients (or parameters).
  void unpack(const Bucket& bucket, const Scalar* buffer, bool gradients, double divisor) const {
    const auto d = static_cast<Scalar>(divisor);
    for (std::size_t k : bucket.entries) {
      const auto& e = (*m_params)[k];
      const auto& t = gradients ? e.gradient : e.value;
      t.array() = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>(buffer, t.size()) / d;
      buffer += t.size();
    }
  }

  const ParameterList<Scalar>* m_params;
  MPI_Comm m_comm = MPI_COMM_NULL;
  int m_rank = 0, m_size = 1;
  std::vector<Bucket> m_buckets;
  std::vector<std::pair<Eigen::Index, Eigen::Index>> m_shapes;  ///< each entry's, at construction
  std::vector<std::size_t> m_entryBucket;                       ///< the bucket of each entry
  std::vector<char> m_ready;            ///< whether each entry is ready in this average
  std::vector<MPI_Request> m_scatters;  ///< each bucket's alltoall
  std::vector<MPI_Request> m_gathers;   ///< each bucket's allgather
  std::size_t m_started = 0;            ///< buckets sent in this average (0..m_started-1)
  Eigen::Index m_numel = 0;             ///< scalars in every bucket
  Eigen::Index m_sliceNumel = 0;        ///< scalars of this process's slices, from every process
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_buffer;  ///< messages: every bucket, packed
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_slices;  ///< messages: this process's slices
  MPI_Win m_window = MPI_WIN_NULL;                    ///< shared memory: every process's segment
  std::vector<void*> m_segments;  ///< shared memory: each process's segment, mapped here
  /// Shared memory: where process r's sum of its slice of bucket q is, at [q · size() + r], in
  /// scalars from the start of its segment.
  std::vector<Eigen::Index> m_sumOffsets;
  double m_weight = 1, m_badWeight = 0;
  std::vector<double> m_weights;  ///< every process's weight, gathered
  MPI_Request m_weightRequest = MPI_REQUEST_NULL;
  bool m_active = false;
};

}  // namespace recurrent
