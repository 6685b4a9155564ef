/**
 * A throwaway `redis-server` for the Redis tests: started on a free loopback port in a temporary
 * directory (no persistence), answered PING before the tests run, stopped afterwards. No system
 * service is assumed. Without `redis-server` on PATH the suite is skipped with a plain notice,
 * except in CI (`CI` set), where it fails.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export const redisServerPath = (): string | undefined => {
  try {
    return execFileSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
}

export const missingNotice = "Redis suite did not run: redis-server not found (apt-get install redis-server)"

/** Whether the Redis suite runs here: it does when redis-server is found; CI without it throws. */
export const redisAvailable = (): boolean => {
  if (redisServerPath() !== undefined) return true
  if (process.env.CI) throw new Error(`${missingNotice}; CI must run it`)
  console.warn(missingNotice)
  return false
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const ping = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.setTimeout(500)
    socket.on("connect", () => socket.write("PING\r\n"))
    socket.on("data", (data) => {
      socket.destroy()
      resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()))
    })
    socket.on("error", () => resolve(false))
    socket.on("timeout", () => {
      socket.destroy()
      resolve(false)
    })
  })

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Stops the server (it can be started again on the same port). */
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
  /** Stops it for good and removes its directory. */
  readonly remove: () => Promise<void>
}

export const startRedis = async (options: { readonly password?: string } = {}): Promise<RedisServer> => {
  const bin = redisServerPath()
  if (bin === undefined) throw new Error(missingNotice)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llm-router-redis-"))
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]
    if (options.password !== undefined) args.push("--requirepass", options.password)
    child = spawn(bin, args, { stdio: "ignore" })
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (await ping(port)) return
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new Error(`redis-server did not answer on port ${port}`)
  }
  const stop = async () => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return
    await new Promise<void>((resolve) => {
      running.once("exit", () => resolve())
      running.kill("SIGKILL")
    })
  }
  try {
    await start()
  } catch (error) {
    await stop()
    fs.rmSync(dir, { recursive: true, force: true })
    throw error
  }
  return {
    port,
    url: options.password === undefined ? `redis://127.0.0.1:${port}` : `redis://:${options.password}@127.0.0.1:${port}`,
    start,
    stop,
    remove: async () => {
      await stop()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

const redisCliPath = (): string | undefined => {
  try {
    return execFileSync("sh", ["-c", "command -v redis-cli"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
}

export const clusterMissingNotice = "Redis Cluster suite did not run: redis-server or redis-cli not found (apt-get install redis-server)"

/** As `redisAvailable`, for the Cluster suite (it needs `redis-cli` too, to create the cluster). */
export const redisClusterAvailable = (): boolean => {
  if (redisServerPath() !== undefined && redisCliPath() !== undefined) return true
  if (process.env.CI) throw new Error(`${clusterMissingNotice}; CI must run it`)
  console.warn(clusterMissingNotice)
  return false
}

export interface RedisCluster {
  /** The nodes' ports (three masters, no replicas), all on 127.0.0.1. */
  readonly ports: ReadonlyArray<number>
  readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** The port of the master serving `key`'s slot (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`). */
  readonly nodeOf: (key: string) => number
  /** Stops every node for good and removes their directory. */
  readonly remove: () => Promise<void>
}

/**
 * A throwaway Redis Cluster: three `redis-server --cluster-enabled yes` on free loopback ports in
 * one temporary directory (no persistence), joined by `redis-cli --cluster create` with no
 * replicas, returned once every node's `CLUSTER INFO` says `cluster_state:ok`.
 */
export const startRedisCluster = async (): Promise<RedisCluster> => {
  const bin = redisServerPath()
  const cli = redisCliPath()
  if (bin === undefined || cli === undefined) throw new Error(clusterMissingNotice)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llm-router-redis-cluster-"))
  const children: Array<ChildProcess> = []
  const ports: Array<number> = []
  const redisCli = (port: number, ...args: Array<string>) =>
    execFileSync(cli, ["-h", "127.0.0.1", "-p", String(port), ...args], { encoding: "utf8", timeout: 10_000 })
  const remove = async () => {
    await Promise.all(children.splice(0).map((child) =>
      child.exitCode !== null || child.signalCode !== null ? undefined : new Promise<void>((resolve) => {
        child.once("exit", () => resolve())
        child.kill("SIGKILL")
      })
    ))
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < 3; i++) {
      let port = await freePort()
      while (ports.includes(port)) port = await freePort()
      ports.push(port)
      children.push(spawn(bin, [
        "--port", String(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`,
        "--save", "", "--appendonly", "no", "--dir", dir
      ], { stdio: "ignore" }))
    }
    const deadline = Date.now() + 20_000
    for (const port of ports) {
      while (!(await ping(port))) {
        if (Date.now() > deadline) throw new Error(`redis-server (cluster node) did not answer on port ${port}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    execFileSync(cli, ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"], {
      stdio: "ignore",
      timeout: 20_000
    })
    for (const port of ports) {
      while (!/cluster_state:ok/.test(redisCli(port, "CLUSTER", "INFO"))) {
        if (Date.now() > deadline) throw new Error(`Redis Cluster node ${port} did not reach cluster_state:ok`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  } catch (error) {
    await remove()
    throw error
  }
  // slot ranges -> master port, as the cluster reports them (redis-cli prints one value a line)
  const ranges: Array<readonly [number, number, number]> = []
  const lines = redisCli(ports[0], "CLUSTER", "SLOTS").trim().split("\n").map((l) => l.trim())
  for (let i = 0; i + 3 < lines.length; i++) {
    const [from, to, host, port] = lines.slice(i, i + 4)
    if (/^\d+$/.test(from) && /^\d+$/.test(to) && host === "127.0.0.1" && ports.includes(Number(port))) {
      ranges.push([Number(from), Number(to), Number(port)])
      i += 3
    }
  }
  return {
    ports,
    nodes: ports.map((port) => ({ host: "127.0.0.1", port })),
    nodeOf: (key) => {
      const slot = Number(redisCli(ports[0], "CLUSTER", "KEYSLOT", key).trim())
      const found = ranges.find(([from, to]) => slot >= from && slot <= to)
      if (found === undefined) throw new Error(`no node serves slot ${slot}`)
      return found[2]
    },
    remove
  }
}
