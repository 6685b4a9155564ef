import { describe, expect, it } from "@effect/vitest"
import { Tokens } from "../src/index.js"

describe("Tokens", () => {
  it("counts English at about 4 characters a token and other scripts at one a character", () => {
    // cl100k_base gives 9 tokens for this sentence
    expect(Tokens.text("The quick brown fox jumps over the lazy dog.")).toBe(11)
    expect(Tokens.text("こんにちは世界")).toBe(7)
    // an emoji (a surrogate pair) is one code point
    expect(Tokens.text("🙂")).toBe(1)
    expect(Tokens.text("")).toBe(0)
  })

  it("counts messages, images, tools and the response schema of a chat", () => {
    const bare = Tokens.prompt({ model: "g", messages: [{ role: "user", content: "Hello, world!" }] })
    expect(bare).toBe(3 + 3 + 4)
    const withImage = Tokens.prompt({
      model: "g",
      messages: [{ role: "user", content: [{ type: "text", text: "Hello, world!" }, { type: "image_url", image_url: { url: "https://x/y.png" } }] }]
    })
    expect(withImage).toBe(bare + 765)
    const withTools = Tokens.prompt({
      model: "g",
      messages: [{ role: "user", content: "Hello, world!" }],
      tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }]
    })
    expect(withTools).toBeGreaterThan(bare + 10)
  })

  it("counts an embedding's inputs; the output limit is max_completion_tokens, else max_tokens", () => {
    expect(Tokens.prompt({ model: "e", input: ["abcd", "abcdefgh"] })).toBe(3)
    expect(Tokens.maxOutput({ model: "e", input: "x" })).toBe(0)
    expect(Tokens.maxOutput({ model: "g", messages: [] })).toBeUndefined()
    expect(Tokens.maxOutput({ model: "g", messages: [], max_tokens: 10, max_completion_tokens: 20 })).toBe(20)
  })
})
