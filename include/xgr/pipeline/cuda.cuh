// xgr/pipeline/cuda.cuh — the CUDA backend of StreamPipeline: streams, events and CUDA graphs.
//
// StreamPipeline<Slot, exec::cuda> runs device stages by enqueueing them on a stream of their lane
// (the batch in slot s uses stream s % lane.streams) and recording one event per (stage, slot):
//   * a device stage first makes its stream wait on its device producers' events, then enqueues;
//   * a host stage first waits (on its worker thread) for its device producers' events;
//   * completion waits for the events of every device stage the batch enqueued, then frees the slot.
// Enqueueing happens on the thread that satisfied the stage's last input (the submitter, or the
// host worker that finished a producer), so a chain of device stages costs no thread hand-off; with
// PipelineOptions::launcher_thread, on one launcher thread instead, so that host stages do not
// spend their time in launches.
//
// CUDA graphs: a device stage with DeviceStageOptions::graph_bucket is captured on first use for
// each (slot, bucket) — slots own different buffers, so their graphs differ — and replayed with one
// cudaGraphLaunch afterwards: for a decode stage of L rounds of a few kernels each, one launch
// instead of dozens. A capture that fails (the stage synchronised, allocated, or threw while
// capturing) marks that (slot, bucket) as not capturable and the stage runs as plain launches.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "xgr/core/cuda.cuh"
#include "xgr/pipeline/pipeline.hpp"

namespace xgr {

template <class Slot>
class PipelineBackend<exec::cuda, Slot> {
 public:
  using Stage = detail::PipelineStage<Slot, exec::cuda>;
  static constexpr bool device_stages_inline = true;

  PipelineBackend(const PipelineOptions& options, const std::vector<Stage>& stages)
      : slot_count_(options.slots), graphs_(stages.size()) {
    for (const StreamLane& lane_options : options.lanes) {
      Lane lane;
      const std::size_t streams = lane_options.streams == 0 ? options.slots : lane_options.streams;
      for (std::size_t i = 0; i < streams; ++i) {
        lane.streams.emplace_back();
        lane.locks.push_back(std::make_unique<std::mutex>());
      }
      lanes_.push_back(std::move(lane));
    }
    is_device_stage_.reserve(stages.size());
    for (const Stage& stage : stages) is_device_stage_.push_back(stage.kind == StageKind::device);
    // Dependency edges only: timing-free events are cheaper to record and to wait on.
    events_.reserve(stages.size() * slot_count_);
    for (std::size_t i = 0; i < stages.size() * slot_count_; ++i) events_.emplace_back(cudaEventDisableTiming);
  }

  PipelineBackend(const PipelineBackend&) = delete;
  PipelineBackend& operator=(const PipelineBackend&) = delete;

  ~PipelineBackend() {
    for (auto& stage_graphs : graphs_) {
      for (auto& [key, graph] : stage_graphs) {
        if (graph.exec != nullptr) (void)cudaGraphExecDestroy(graph.exec);
      }
    }
  }

  void run_device_stage(std::size_t stage_index, const Stage& stage, Slot& slot, BatchInfo info) {
    const DeviceStageOptions<Slot>& options = stage.device_options;
    Lane& lane = lanes_[options.lane];
    const std::size_t which = info.slot % lane.streams.size();
    const cudaStream_t stream = lane.streams[which].get();
    // One enqueuer per stream at a time: a capture in progress must not swallow another stage's launches.
    std::lock_guard stream_lock(*lane.locks[which]);

    for (std::size_t producer : stage.producers) {
      if (is_device_stage_[producer]) event(producer, info.slot).wait_on(stream);
    }
    // Record the stage's event however the enqueue ends: completion waits on it, and whatever was
    // enqueued before a throw must be finished before the slot is reused.
    struct RecordOnExit {
      Event& done;
      cudaStream_t stream;
      ~RecordOnExit() { (void)cudaEventRecord(done.get(), stream); }
    } record_on_exit{event(stage_index, info.slot), stream};

    if (options.graph_bucket) {
      const GraphKey key{info.slot, options.graph_bucket(slot)};
      const Graph* graph = find_graph(stage_index, key);
      if (graph == nullptr) {
        const Capture capture = capture_rounds(stage, slot, info, stream);
        if (capture.exec != nullptr) {
          graph_captures_.fetch_add(1, std::memory_order_relaxed);
          graph = store_graph(stage_index, key, Graph{capture.exec});
        } else {
          // Not capturable. If the stage threw while capturing, the plain run tells whether the
          // stage itself fails (the error reaches the batch; nothing is remembered) or only its
          // capture did (remembered: this key runs plain from now on).
          graph_fallbacks_.fetch_add(1, std::memory_order_relaxed);
          if (capture.threw) enqueue_rounds(stage, slot, info, stream);
          graph = store_graph(stage_index, key, Graph{nullptr});
          if (capture.threw) {
            device_launches_.fetch_add(1, std::memory_order_relaxed);
            return;
          }
        }
      }
      if (graph->exec != nullptr) {
        XGR_CUDA_CHECK(cudaGraphLaunch(graph->exec, stream));
        graph_launches_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    enqueue_rounds(stage, slot, info, stream);
    device_launches_.fetch_add(1, std::memory_order_relaxed);
  }

  void wait_device_stage(std::size_t stage_index, std::size_t slot) { event(stage_index, slot).synchronize(); }

  void add_stats(PipelineStats& stats) const {
    stats.device_launches += device_launches_.load(std::memory_order_relaxed);
    stats.graph_launches += graph_launches_.load(std::memory_order_relaxed);
    stats.graph_captures += graph_captures_.load(std::memory_order_relaxed);
    stats.graph_fallbacks += graph_fallbacks_.load(std::memory_order_relaxed);
  }

 private:
  struct Lane {
    std::vector<Stream> streams;
    std::vector<std::unique_ptr<std::mutex>> locks;
  };

  struct GraphKey {
    std::size_t slot;
    std::uint64_t bucket;
    bool operator==(const GraphKey&) const = default;
  };
  struct GraphKeyHash {
    std::size_t operator()(const GraphKey& key) const noexcept {
      return std::hash<std::uint64_t>{}(key.bucket * 0x9e3779b97f4a7c15ull ^ key.slot);
    }
  };
  struct Graph {
    cudaGraphExec_t exec = nullptr;  // null: not capturable, run plain launches
  };

  Event& event(std::size_t stage_index, std::size_t slot) { return events_[stage_index * slot_count_ + slot]; }

  static void enqueue_rounds(const Stage& stage, Slot& slot, BatchInfo info, cudaStream_t stream) {
    for (int round = 0; round < stage.device_options.rounds; ++round) {
      info.round = round;
      stage.device_fn(slot, info, exec::cuda{stream});
    }
  }

  const Graph* find_graph(std::size_t stage_index, const GraphKey& key) {
    std::lock_guard lock(graphs_mutex_);
    auto found = graphs_[stage_index].find(key);
    return found == graphs_[stage_index].end() ? nullptr : &found->second;
  }

  const Graph* store_graph(std::size_t stage_index, const GraphKey& key, Graph graph) {
    std::lock_guard lock(graphs_mutex_);
    return &graphs_[stage_index].emplace(key, graph).first->second;
  }

  struct Capture {
    cudaGraphExec_t exec = nullptr;  // null: the capture failed
    bool threw = false;              // the stage threw while being captured
  };

  // Captures the stage's rounds into an instantiated graph. Capturing executes nothing: the caller
  // launches the graph (or, when the capture failed, the plain rounds) afterwards.
  static Capture capture_rounds(const Stage& stage, Slot& slot, const BatchInfo& info, cudaStream_t stream) {
    Capture result;
    // Thread-local mode: only this thread's unsafe calls (a synchronisation, an allocation) break
    // the capture; host workers enqueueing on other streams meanwhile are unaffected.
    XGR_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_rounds(stage, slot, info, stream);
    } catch (...) {
      result.threw = true;
    }
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
    (void)cudaGetLastError();  // an invalidated capture leaves its error behind
    if (!result.threw && ended == cudaSuccess && graph != nullptr) {
      if (cudaGraphInstantiate(&result.exec, graph, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        result.exec = nullptr;
      }
    }
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    return result;
  }

  std::size_t slot_count_;
  std::vector<Lane> lanes_;
  std::vector<bool> is_device_stage_;
  std::vector<Event> events_;  // [stage * slot_count + slot]
  std::mutex graphs_mutex_;    // guards the maps; a Graph's address is stable (node-based map)
  std::vector<std::unordered_map<GraphKey, Graph, GraphKeyHash>> graphs_;  // per stage
  std::atomic<std::uint64_t> device_launches_{0};
  std::atomic<std::uint64_t> graph_launches_{0};
  std::atomic<std::uint64_t> graph_captures_{0};
  std::atomic<std::uint64_t> graph_fallbacks_{0};
};

}  // namespace xgr
