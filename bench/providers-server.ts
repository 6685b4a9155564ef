/**
 * The loopback server of `bench/providers.ts`: a plain `node:http` server answering every
 * `POST .../chat/completions` with a fixed OpenAI-format reply, run in a child process so that
 * its CPU cost stays off the event loop of the clients being timed.
 *
 * Replies are built once (Buffers) and never change; request bodies are read to the end and
 * thrown away (a request is a stream when its body contains `"stream":true`).
 *
 * - JSON: one `chat.completion` with `content-length`
 * - SSE, by path prefix:
 *   - `/burst/...`: the whole event stream (20 content chunks, a finish chunk... see
 *     `providers-fixtures.ts`) in one write, then end: the client sees one or two body chunks
 *   - `/paced/...`: one write per event with a `setImmediate` between them, as a real model
 *     streams (each event normally reaches the client in a read of its own), and the end of
 *     the body (chunked encoding's last chunk) in a write of its own after `[DONE]`, as
 *     servers that flush every event do (uvicorn / vLLM, Go servers)
 *   - `/tail/...`: as `/paced/`, the end of the body 2 ms after `[DONE]` (as it comes from a
 *     remote server: a moment later, in a packet of its own); used to see whether a client
 *     keeps its connection (reads to the end) or drops it (stops at `[DONE]`)
 *
 * Every reply carries OpenAI's usual headers, rate-limit ones included (the router parses them).
 *
 * Started by `bench/providers.ts` with `fork` (IPC): it sends `{ port }` once listening,
 * answers a `"connections"` message with `{ connections }` (TCP connections accepted so far:
 * how the clients reuse them) and exits when its parent disconnects. Also runnable on its own: `tsx bench/providers-server.ts`.
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import { chatReplyBody, rateLimitHeaders, sseEvents } from "./providers-fixtures.js"

const json = Buffer.from(chatReplyBody)
const events = sseEvents.map((e) => Buffer.from(e))
const burst = Buffer.concat(events)

const jsonHeaders: Http.OutgoingHttpHeaders = {
  "content-type": "application/json",
  "content-length": String(json.length),
  ...rateLimitHeaders
}
const sseHeaders: Http.OutgoingHttpHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  ...rateLimitHeaders
}

// Like a server that flushes every event, then ends its response apart (uvicorn / vLLM, Go):
// the chunked-encoding terminator comes in a write of its own, after `[DONE]`.
/** `/tail/`: how long after `[DONE]` the body ends. */
const tailDelayMs = 2

const writePaced = (res: Http.ServerResponse, i: number, endDelayMs: number): void => {
  if (res.destroyed) return
  if (i === events.length) {
    if (endDelayMs > 0) setTimeout(() => res.end(), endDelayMs)
    else res.end()
    return
  }
  res.write(events[i])
  setImmediate(writePaced, res, i + 1, endDelayMs)
}

const server = Http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const parts: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => parts.push(chunk))
  req.on("end", () => {
    const body = parts.length === 1 ? parts[0] : Buffer.concat(parts)
    if (req.method !== "POST" || !(req.url ?? "").endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" })
      res.end(`{"error":{"message":"no route for ${req.url}","type":"invalid_request_error","code":"not_found"}}`)
      return
    }
    if (body.indexOf("\"stream\":true") === -1) {
      res.writeHead(200, jsonHeaders)
      res.end(json)
      return
    }
    res.writeHead(200, sseHeaders)
    const url = req.url ?? ""
    if (url.startsWith("/paced/")) {
      writePaced(res, 0, 0)
    } else if (url.startsWith("/tail/")) {
      writePaced(res, 0, tailDelayMs)
    } else {
      res.end(burst)
    }
  })
})
let connections = 0
server.on("connection", () => void connections++)
server.keepAliveTimeout = 60_000
server.headersTimeout = 65_000

server.listen(0, "127.0.0.1", () => {
  const port = (server.address() as Net.AddressInfo).port
  if (process.send !== undefined) {
    process.send({ port })
    process.on("message", (message) => {
      if (message === "connections") process.send?.({ connections })
    })
    process.on("disconnect", () => process.exit(0))
  } else {
    process.stdout.write(`listening on http://127.0.0.1:${port}\n`)
  }
})
