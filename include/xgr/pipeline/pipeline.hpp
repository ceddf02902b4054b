// xgr/pipeline/pipeline.hpp — StreamPipeline: a small stage graph with several micro-batches in flight.
//
// A GR request group spends its life in a chain of short stages: host scheduling and input
// packing, a host-to-device copy, a handful of kernels (prefill, L decode rounds), a copy back and
// host post-processing. Run one after the other, each stage leaves every other resource idle. The
// pipeline keeps `slots` micro-batches in flight instead, so that while batch n's kernels run,
// batch n+1 is being packed on a host worker and batch n-1's results are being copied back.
//
// The user declares the graph once:
//   * a **host stage** is a callable run on a host worker thread, `fn(slot, info)`;
//   * a **device stage** is a callable that *enqueues* work, `fn(slot, info, exec)`, where `exec` is
//     the execution tag of the backend (exec::cuda{stream} on the CUDA backend, exec::host on the
//     host backend), so a generic lambda calling xgr primitives runs on either;
//   * `connect(a, b)` says that b uses what a produced.
// and then submits batches. A batch occupies one **slot** (user-defined state that owns the batch's
// buffers: pinned staging, device tensors, results) from `submit` until every stage has finished.
//
// How edges become synchronisation (CUDA backend, xgr/pipeline/cuda.cuh):
//   device -> device  the consumer's stream waits on the producer's event (no host involvement);
//   host -> device    the device stage is enqueued the moment its last host producer finished, by
//                     that host thread or by the pipeline's launcher thread
//                     (PipelineOptions::launcher_thread): the host signals by enqueueing;
//   device -> host    the host worker waits on the producer's event before running the stage.
// The host backend (this header) runs device stages synchronously on their own worker threads with
// exec::host: the same graph, the same ordering guarantees, no GPU. Tests use it in CI and the
// reference engine uses it where no GPU exists.
//
// Guarantees:
//   * every submitted batch gets a sequence number (0, 1, 2, ... in submission order) and completes
//     exactly once: the completion callback runs for it, in sequence order, with its first error or
//     null, after every stage of the batch has finished (device work included);
//   * a stage runs for a batch only after every producer stage finished for that batch;
//   * a host stage (and, on the host backend, a device stage) sees batches in sequence order;
//   * a slot is handed to a new batch only after its previous batch completed;
//   * a stage that throws (an xgr::Error from a failed CUDA call included) fails its batch: the
//     batch's remaining stages are skipped, its completion carries the exception, and the pipeline
//     goes on with the next batch;
//   * `submit` blocks while all slots are in flight (back-pressure); `try_submit` reports busy.
// Stages and the completion callback must not call submit, drain or shutdown of their own pipeline:
// each may wait for the batch that is calling it.
// Nothing is allocated per batch: slots, per-slot bookkeeping, streams and events exist from start().
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"

namespace xgr {

// What a stage knows about the batch it runs for.
struct BatchInfo {
  std::uint64_t sequence = 0;  // submission order, from 0
  std::size_t slot = 0;        // the slot that holds the batch, < slot_count()
  int round = 0;               // the round of a multi-round device stage, from 0 (else 0)
};

// A stage handle returned by add_host_stage / add_device_stage.
struct StageId {
  std::size_t index = 0;
};

enum class StageKind : std::uint8_t { host, device };

// A group of CUDA streams that device stages name by index (e.g. 0 = compute, 1 = copies). The batch
// in slot s runs a stage of this lane on stream s % streams, so with one stream per slot the batches
// of different slots never queue behind each other; with one stream in total they serialise.
struct StreamLane {
  std::string name = "compute";
  std::size_t streams = 0;  // 0: one stream per slot
};

struct PipelineOptions {
  std::size_t slots = 2;                             // micro-batches in flight, >= 1
  std::vector<StreamLane> lanes = one_compute_lane();  // CUDA backend; the host backend ignores them
  // CUDA backend: who enqueues device stages. false: the thread that satisfied the stage's last
  // input (the submitter or a host worker), at once, with no hand-off. true: one dedicated launcher
  // thread, so that host stages do not pay for launches (tens of microseconds for a stage of many
  // kernels) at the price of a hand-off per batch. Choose true when host stages are the bottleneck.
  bool launcher_thread = false;

  // A function rather than a braced default: GCC 12 crashes (internal compiler error) on
  // `PipelineOptions{.slots = n}` inside a template when the default is `{StreamLane{}}`.
  static std::vector<StreamLane> one_compute_lane() { return {StreamLane{}}; }
};

template <class Slot>
struct DeviceStageOptions {
  std::size_t lane = 0;  // index into PipelineOptions::lanes
  // Rounds enqueued back to back, fn(slot, {.round = 0 .. rounds - 1}, exec), with no host work in
  // between: the L decode rounds of a group, whose later rounds read only what the device wrote.
  int rounds = 1;
  // CUDA backend: when set, the stage's rounds are captured once per (slot, bucket) into a CUDA graph
  // and replayed afterwards. The bucket names a shape: batches with equal buckets must enqueue the
  // same kernels with the same arguments, so per-batch values have to live in the slot's device
  // memory, not in kernel arguments. A stage that cannot be captured (it synchronises, say) falls
  // back to plain launches for that bucket. The host backend ignores it.
  std::function<std::uint64_t(const Slot&)> graph_bucket = {};
};

// Counters for monitoring and tests; a snapshot.
struct PipelineStats {
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;          // batches whose completion ran, failed ones included
  std::uint64_t failed = 0;             // completed with an error
  std::uint64_t completion_errors = 0;  // completion callbacks that threw (they must not)
  std::uint64_t device_launches = 0;    // device-stage runs enqueued as plain launches
  std::uint64_t graph_launches = 0;     // device-stage runs replayed from a CUDA graph
  std::uint64_t graph_captures = 0;     // CUDA graphs captured (one per stage, slot and bucket)
  std::uint64_t graph_fallbacks = 0;    // captures that failed and fell back to plain launches
};

template <class Exec, class Slot>
class PipelineBackend;

namespace detail {

template <class Slot, class Exec>
struct PipelineStage {
  std::string name;
  StageKind kind = StageKind::host;
  std::function<void(Slot&, const BatchInfo&)> host_fn;
  std::function<void(Slot&, const BatchInfo&, Exec)> device_fn;
  DeviceStageOptions<Slot> device_options;
  std::vector<std::size_t> producers;
  std::vector<std::size_t> consumers;
};

}  // namespace detail

// The host backend: device stages run on the host, synchronously, with exec::host.
template <class Slot>
class PipelineBackend<exec::host_t, Slot> {
 public:
  using Stage = detail::PipelineStage<Slot, exec::host_t>;
  // Device stages occupy a worker of their own, like host stages (running them inline would make
  // whichever thread satisfied their inputs, the submitter included, do their work).
  static constexpr bool device_stages_inline = false;

  PipelineBackend(const PipelineOptions&, const std::vector<Stage>&) {}

  void run_device_stage(std::size_t, const Stage& stage, Slot& slot, BatchInfo info) {
    for (int round = 0; round < stage.device_options.rounds; ++round) {
      info.round = round;
      stage.device_fn(slot, info, exec::host);
      device_launches_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // A device stage's work is complete when run_device_stage returns.
  void wait_device_stage(std::size_t, std::size_t) {}
  void add_stats(PipelineStats& stats) const { stats.device_launches += device_launches_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> device_launches_{0};
};

template <class Slot, class Exec = exec::host_t>
class StreamPipeline {
 public:
  using HostStageFn = std::function<void(Slot&, const BatchInfo&)>;
  using DeviceStageFn = std::function<void(Slot&, const BatchInfo&, Exec)>;
  // Runs once per batch, in sequence order, on the pipeline's completion thread, after every stage;
  // `error` is the batch's first exception or null. Read results out of the slot here: the slot is
  // reused when it returns. It must not throw (a throw is counted and dropped).
  using CompletionFn = std::function<void(Slot&, const BatchInfo&, std::exception_ptr error)>;

  // Creates `options.slots` slots with make_slot(slot_index); every buffer a batch needs should be
  // allocated here, once.
  template <class MakeSlot>
  StreamPipeline(PipelineOptions options, MakeSlot&& make_slot) : options_(std::move(options)) {
    require_argument(options_.slots >= 1, "StreamPipeline", "slots must be at least 1");
    require_argument(!options_.lanes.empty(), "StreamPipeline", "at least one stream lane is required");
    slots_.reserve(options_.slots);
    // `new Slot(make_slot(s))` rather than make_unique: the factory's prvalue initialises the slot in
    // place, so slots that own non-movable resources work too.
    for (std::size_t s = 0; s < options_.slots; ++s) slots_.push_back(std::unique_ptr<Slot>(new Slot(make_slot(s))));
  }

  // Default-constructed slots.
  explicit StreamPipeline(PipelineOptions options) : StreamPipeline(std::move(options), [](std::size_t) { return Slot{}; }) {}

  StreamPipeline(const StreamPipeline&) = delete;
  StreamPipeline& operator=(const StreamPipeline&) = delete;

  // Drains what is in flight, then stops the workers.
  ~StreamPipeline() { shutdown(); }

  // --- declaring the graph (before start) -------------------------------------------------------

  StageId add_host_stage(std::string name, HostStageFn fn) {
    require_declaring("StreamPipeline::add_host_stage");
    require_argument(static_cast<bool>(fn), "StreamPipeline::add_host_stage",
                     [&] { return "stage '" + name + "' has no callable"; });
    Stage stage;
    stage.name = std::move(name);
    stage.kind = StageKind::host;
    stage.host_fn = std::move(fn);
    stages_.push_back(std::move(stage));
    return StageId{stages_.size() - 1};
  }

  StageId add_device_stage(std::string name, DeviceStageFn fn, DeviceStageOptions<Slot> options = {}) {
    require_declaring("StreamPipeline::add_device_stage");
    const std::string operation = "StreamPipeline::add_device_stage '" + name + "'";
    require_argument(static_cast<bool>(fn), operation, "no callable");
    require_argument(options.rounds >= 1, operation,
                     [&] { return "rounds must be at least 1, got " + std::to_string(options.rounds); });
    require_argument(options.lane < options_.lanes.size(), operation,
                     [&] { return "lane " + std::to_string(options.lane) + " does not exist (" +
                                      std::to_string(options_.lanes.size()) + " lanes)"; });
    Stage stage;
    stage.name = std::move(name);
    stage.kind = StageKind::device;
    stage.device_fn = std::move(fn);
    stage.device_options = std::move(options);
    stages_.push_back(std::move(stage));
    return StageId{stages_.size() - 1};
  }

  // `consumer` runs for a batch only after `producer` finished for it.
  void connect(StageId producer, StageId consumer) {
    require_declaring("StreamPipeline::connect");
    require_argument(producer.index < stages_.size() && consumer.index < stages_.size(), "StreamPipeline::connect",
                     "unknown stage id");
    require_argument(producer.index != consumer.index, "StreamPipeline::connect",
                     [&] { return "stage '" + stages_[producer.index].name + "' cannot depend on itself"; });
    auto& consumers = stages_[producer.index].consumers;
    if (std::find(consumers.begin(), consumers.end(), consumer.index) != consumers.end()) return;
    consumers.push_back(consumer.index);
    stages_[consumer.index].producers.push_back(producer.index);
  }

  void on_complete(CompletionFn fn) {
    require_declaring("StreamPipeline::on_complete");
    completion_ = std::move(fn);
  }

  // Checks the graph (non-empty, acyclic), creates the backend (streams, events) and the workers.
  void start() {
    require_declaring("StreamPipeline::start");
    require_argument(!stages_.empty(), "StreamPipeline::start", "the graph has no stages");
    require_acyclic();
    backend_ = std::make_unique<Backend>(options_, stages_);
    const std::size_t stage_count = stages_.size();
    batches_.resize(slots_.size());
    for (auto& batch : batches_) {
      batch.producers_left.assign(stage_count, 0);
      batch.stage_ready.assign(stage_count, 0);
      batch.device_enqueued.assign(stage_count, 0);
    }
    workers_.resize(stage_count + 1);  // one per worker-run stage, plus the completion worker
    for (auto& worker : workers_) worker = std::make_unique<Worker>();
    started_ = true;
    for (std::size_t s = 0; s < stage_count; ++s) {
      if (runs_on_worker(s)) workers_[s]->thread = std::thread([this, s] { stage_worker(s); });
    }
    workers_[stage_count]->thread = std::thread([this] { completion_worker(); });
    if (options_.launcher_thread && Backend::device_stages_inline) {
      launcher_queue_.resize(slots_.size() * stage_count);
      launcher_ = std::make_unique<Worker>();
      launcher_->thread = std::thread([this] { launcher_worker(); });
      launcher_id_ = launcher_->thread.get_id();
    }
  }

  // --- running ------------------------------------------------------------------------------------

  // Takes a free slot (waiting while all are in flight), fills it with load(slot, info) on the
  // calling thread, and lets the stages run. Returns the batch's sequence number. If load throws,
  // the batch still completes (as failed, so that its sequence number is accounted for) and the
  // exception is rethrown here.
  template <class Load>
  std::uint64_t submit(Load&& load) {
    std::unique_lock lock(mutex_);
    require_running("StreamPipeline::submit");
    slot_freed_.wait(lock, [&] { return !accepting_ || in_flight_ < slots_.size(); });
    require_running("StreamPipeline::submit");
    return launch(lock, std::forward<Load>(load));
  }

  // Like submit, but returns nullopt at once when every slot is in flight.
  template <class Load>
  std::optional<std::uint64_t> try_submit(Load&& load) {
    std::unique_lock lock(mutex_);
    require_running("StreamPipeline::try_submit");
    if (in_flight_ == slots_.size()) return std::nullopt;
    return launch(lock, std::forward<Load>(load));
  }

  // Waits until every batch submitted so far has completed.
  void drain() {
    std::unique_lock lock(mutex_);
    slot_freed_.wait(lock, [&] { return in_flight_ == 0; });
  }

  // Stops accepting batches, completes those in flight, and joins the workers. Idempotent; the
  // destructor calls it.
  void shutdown() {
    {
      std::unique_lock lock(mutex_);
      if (!started_ || stopped_) {
        stopped_ = true;
        return;
      }
      accepting_ = false;
      slot_freed_.notify_all();
      slot_freed_.wait(lock, [&] { return in_flight_ == 0; });
      stopping_ = true;
      stopped_ = true;
    }
    for (auto& worker : workers_) {
      {
        std::lock_guard lock(mutex_);
        worker->wake.notify_all();
      }
      if (worker->thread.joinable()) worker->thread.join();
    }
    if (launcher_) {
      {
        std::lock_guard lock(mutex_);
        launcher_->wake.notify_all();
      }
      launcher_->thread.join();
    }
  }

  [[nodiscard]] PipelineStats stats() const {
    std::lock_guard lock(mutex_);
    PipelineStats snapshot = stats_;
    if (backend_) backend_->add_stats(snapshot);
    return snapshot;
  }
  [[nodiscard]] std::size_t slot_count() const noexcept { return slots_.size(); }
  [[nodiscard]] std::size_t stage_count() const noexcept { return stages_.size(); }
  [[nodiscard]] const std::string& stage_name(StageId id) const { return stages_.at(id.index).name; }
  [[nodiscard]] std::size_t in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
  }

 private:
  using Stage = detail::PipelineStage<Slot, Exec>;
  using Backend = PipelineBackend<Exec, Slot>;

  // The bookkeeping of the batch a slot holds; sized at start(), reset per batch without allocating.
  struct BatchState {
    bool active = false;
    std::uint64_t sequence = 0;
    std::vector<std::size_t> producers_left;     // per stage: producers not yet finished
    std::vector<std::uint8_t> stage_ready;       // per worker-run stage: ready, not yet taken
    std::vector<std::uint8_t> device_enqueued;   // per device stage: work was enqueued (must be awaited)
    std::size_t stages_left = 0;
    std::exception_ptr error;
  };

  struct Worker {
    std::thread thread;
    std::condition_variable wake;
    std::uint64_t next_sequence = 0;  // the batch this worker runs next (sequence order)
  };

  [[nodiscard]] bool runs_on_worker(std::size_t stage) const {
    return stages_[stage].kind == StageKind::host || !Backend::device_stages_inline;
  }

  // `operation` is a literal: submit checks on every batch, and a composed name would allocate.
  void require_declaring(const char* operation) const {
    require_argument(!started_, operation, "the graph is fixed once start() ran");
  }
  void require_running(const char* operation) const {
    require_argument(started_, operation, "call start() first");
    require_argument(accepting_, operation, "the pipeline is shut down");
  }

  void require_acyclic() const {
    // Kahn's algorithm: a graph is acyclic iff repeatedly removing stages without producers empties it.
    std::vector<std::size_t> producers_left(stages_.size());
    std::vector<std::size_t> ready;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      producers_left[s] = stages_[s].producers.size();
      if (producers_left[s] == 0) ready.push_back(s);
    }
    std::size_t removed = 0;
    while (!ready.empty()) {
      const std::size_t s = ready.back();
      ready.pop_back();
      ++removed;
      for (std::size_t consumer : stages_[s].consumers) {
        if (--producers_left[consumer] == 0) ready.push_back(consumer);
      }
    }
    if (removed == stages_.size()) return;
    std::string cycle;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      if (producers_left[s] != 0) cycle += (cycle.empty() ? "'" : ", '") + stages_[s].name + "'";
    }
    throw Error(ErrorKind::invalid_argument, "StreamPipeline::start", "the stage graph has a cycle through " + cycle);
  }

  template <class Load>
  std::uint64_t launch(std::unique_lock<std::mutex>& lock, Load&& load) {
    // Round-robin over free slots, so that consecutive batches land on different streams.
    std::size_t slot = next_slot_;
    while (batches_[slot].active) slot = (slot + 1) % slots_.size();
    next_slot_ = (slot + 1) % slots_.size();
    BatchState& batch = batches_[slot];
    batch.active = true;
    batch.sequence = next_sequence_++;
    batch.error = nullptr;
    batch.stages_left = stages_.size();
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      batch.producers_left[s] = stages_[s].producers.size();
      batch.stage_ready[s] = 0;
      batch.device_enqueued[s] = 0;
    }
    ++in_flight_;
    ++stats_.submitted;
    const BatchInfo info{batch.sequence, slot, 0};
    lock.unlock();

    std::exception_ptr load_error;
    try {
      load(*slots_[slot], info);
    } catch (...) {
      load_error = std::current_exception();
    }

    std::vector<std::size_t>& inline_ready = inline_scratch();
    lock.lock();
    if (load_error) batch.error = load_error;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      if (stages_[s].producers.empty()) mark_ready(lock, slot, s, inline_ready);
    }
    lock.unlock();
    run_inline(slot, inline_ready);
    if (load_error) std::rethrow_exception(load_error);
    return info.sequence;
  }

  // Called with the lock held: the stage has all its inputs for the batch in `slot`.
  void mark_ready(std::unique_lock<std::mutex>&, std::size_t slot, std::size_t stage, std::vector<std::size_t>& inline_ready) {
    if (runs_on_worker(stage)) {
      batches_[slot].stage_ready[stage] = 1;
      workers_[stage]->wake.notify_one();
    } else if (launcher_ && std::this_thread::get_id() != launcher_id_) {
      // At most one entry per (slot, stage) is queued at a time, so the ring never overflows.
      launcher_queue_[(launcher_head_ + launcher_queued_) % launcher_queue_.size()] = {slot, stage};
      ++launcher_queued_;
      launcher_->wake.notify_one();
    } else {
      inline_ready.push_back(stage);
    }
  }

  // Called with the lock held when `stage` finished (ran, failed or was skipped) for `slot`.
  void finish_stage(std::unique_lock<std::mutex>& lock, std::size_t slot, std::size_t stage, std::vector<std::size_t>& inline_ready) {
    BatchState& batch = batches_[slot];
    for (std::size_t consumer : stages_[stage].consumers) {
      if (--batch.producers_left[consumer] == 0) mark_ready(lock, slot, consumer, inline_ready);
    }
    if (--batch.stages_left == 0) workers_.back()->wake.notify_one();
  }

  // Device stages of the CUDA backend: enqueued by the thread that satisfied their inputs, right
  // away (an enqueue takes microseconds; a hand-off to another thread would cost as much again).
  void run_inline(std::size_t slot, std::vector<std::size_t>& ready) {
    while (!ready.empty()) {
      const std::size_t stage = ready.back();
      ready.pop_back();
      run_stage(slot, stage, ready);
    }
  }

  // Runs (or skips, when the batch already failed) one stage for the batch in `slot`, then
  // propagates readiness. Called without the lock.
  void run_stage(std::size_t slot, std::size_t stage_index, std::vector<std::size_t>& inline_ready) {
    const Stage& stage = stages_[stage_index];
    BatchInfo info;
    bool skip = false;
    {
      std::lock_guard lock(mutex_);
      info = BatchInfo{batches_[slot].sequence, slot, 0};
      skip = batches_[slot].error != nullptr;
      if (!skip && stage.kind == StageKind::device) batches_[slot].device_enqueued[stage_index] = 1;
    }
    std::exception_ptr error;
    if (!skip) {
      try {
        if (stage.kind == StageKind::device) {
          backend_->run_device_stage(stage_index, stage, *slots_[slot], info);
        } else {
          // device -> host edges: the worker waits for the producers' device work to complete.
          for (std::size_t producer : stage.producers) {
            if (stages_[producer].kind == StageKind::device) backend_->wait_device_stage(producer, slot);
          }
          stage.host_fn(*slots_[slot], info);
        }
      } catch (...) {
        error = std::current_exception();
      }
    }
    std::unique_lock lock(mutex_);
    if (error && !batches_[slot].error) batches_[slot].error = error;
    finish_stage(lock, slot, stage_index, inline_ready);
  }

  // Enqueues device stages handed to it, and their device consumers inline (it is the launcher).
  void launcher_worker() {
    std::vector<std::size_t> inline_ready;
    inline_ready.reserve(stages_.size());
    for (;;) {
      std::pair<std::size_t, std::size_t> task;
      {
        std::unique_lock lock(mutex_);
        launcher_->wake.wait(lock, [&] { return stopping_ || launcher_queued_ > 0; });
        if (launcher_queued_ == 0) return;  // stopping, and nothing left
        task = launcher_queue_[launcher_head_];
        launcher_head_ = (launcher_head_ + 1) % launcher_queue_.size();
        --launcher_queued_;
      }
      run_stage(task.first, task.second, inline_ready);
      run_inline(task.first, inline_ready);
    }
  }

  void stage_worker(std::size_t stage) {
    Worker& worker = *workers_[stage];
    std::vector<std::size_t> inline_ready;
    inline_ready.reserve(stages_.size());
    for (;;) {
      std::size_t slot = 0;
      {
        std::unique_lock lock(mutex_);
        worker.wake.wait(lock, [&] {
          return stopping_ || (find_batch(worker.next_sequence, slot) && batches_[slot].stage_ready[stage] != 0);
        });
        if (stopping_) return;
        batches_[slot].stage_ready[stage] = 0;
        ++worker.next_sequence;
      }
      run_stage(slot, stage, inline_ready);
      run_inline(slot, inline_ready);
    }
  }

  // With the lock held: the slot that holds batch `sequence`, if it has been submitted and not yet
  // completed. Workers wait on it for the next batch in their sequence order.
  bool find_batch(std::uint64_t sequence, std::size_t& slot) const {
    for (std::size_t s = 0; s < batches_.size(); ++s) {
      if (batches_[s].active && batches_[s].sequence == sequence) {
        slot = s;
        return true;
      }
    }
    return false;
  }

  // Completes batches in sequence order: waits for their device work, runs the completion
  // callback, and frees the slot.
  void completion_worker() {
    Worker& worker = *workers_.back();
    for (;;) {
      std::size_t slot = 0;
      std::exception_ptr error;
      {
        std::unique_lock lock(mutex_);
        worker.wake.wait(lock, [&] {
          return stopping_ || (find_batch(worker.next_sequence, slot) && batches_[slot].stages_left == 0);
        });
        if (stopping_) return;
        ++worker.next_sequence;
      }
      // Every device stage that enqueued work is awaited, not only the graph's sinks: a failed batch
      // skips consumers, and its slot must not be reused while a producer's kernels still run.
      for (std::size_t s = 0; s < stages_.size(); ++s) {
        if (batches_[slot].device_enqueued[s] == 0) continue;
        try {
          backend_->wait_device_stage(s, slot);
        } catch (...) {
          std::lock_guard lock(mutex_);
          if (!batches_[slot].error) batches_[slot].error = std::current_exception();
        }
      }
      BatchInfo info;
      {
        std::lock_guard lock(mutex_);
        info = BatchInfo{batches_[slot].sequence, slot, 0};
        error = batches_[slot].error;
      }
      bool completion_threw = false;
      if (completion_) {
        try {
          completion_(*slots_[slot], info, error);
        } catch (...) {
          completion_threw = true;
        }
      }
      std::lock_guard lock(mutex_);
      batches_[slot].active = false;
      batches_[slot].error = nullptr;
      --in_flight_;
      ++stats_.completed;
      if (error) ++stats_.failed;
      if (completion_threw) ++stats_.completion_errors;
      slot_freed_.notify_all();
    }
  }

  // Scratch for the submitting thread's inline stages: per thread, so concurrent submitters do not
  // share it, and reserved once so that submits do not allocate after the first.
  std::vector<std::size_t>& inline_scratch() {
    thread_local std::vector<std::size_t> scratch;
    if (scratch.capacity() < stages_.size()) scratch.reserve(stages_.size());
    scratch.clear();
    return scratch;
  }

  PipelineOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Stage> stages_;
  CompletionFn completion_;
  std::unique_ptr<Backend> backend_;

  mutable std::mutex mutex_;
  std::condition_variable slot_freed_;  // submitters, drain() and shutdown() wait on it
  std::vector<BatchState> batches_;     // per slot
  std::vector<std::unique_ptr<Worker>> workers_;  // per stage (unused for inline stages), then completion
  std::unique_ptr<Worker> launcher_;               // PipelineOptions::launcher_thread only
  std::thread::id launcher_id_;
  std::vector<std::pair<std::size_t, std::size_t>> launcher_queue_;  // ring of (slot, stage)
  std::size_t launcher_head_ = 0;
  std::size_t launcher_queued_ = 0;
  std::uint64_t next_sequence_ = 0;
  std::size_t next_slot_ = 0;
  std::size_t in_flight_ = 0;
  bool started_ = false;
  bool accepting_ = true;
  bool stopping_ = false;
  bool stopped_ = false;
  PipelineStats stats_;
};

}  // namespace xgr
