// Package telemetry exposes selfplay's Prometheus metrics: what a worker
// does (tasks by kind and outcome, tasks in flight, endpoint request
// latencies, errors and retries, tokens sampled) and where a run stands
// (the current iteration, each iteration's stage, tasks by status and
// generate outcomes, selected pairs), served over HTTP on --metrics-addr.
//
// Every metric name starts with selfplay_ and labels are drawn from
// endpoint, status, kind, outcome, iteration and stage. Worker metrics are
// counted in process by hooks the worker and the llm clients call; run
// metrics are read from PostgreSQL at scrape time, so they stay right when
// an orchestrator restarts or several workers share the work.
//
// A worker wires it up as
//
//	reg := telemetry.NewRegistry()
//	m := telemetry.NewWorkerMetrics(reg)
//	clients, _ := buildClients(cfg, log, m.LLMHooks())
//	clients.Policy = m.Sampler("generate", clients.Policy)
//	w := worker.New(pool, queues, clients, worker.Options{OnTask: m.OnTask, OnInFlight: m.OnInFlight}, log)
//	addr, _ := telemetry.Serve(ctx, ":9464", reg, log)
package telemetry
