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
