/**
 * The JSDoc of the public modules, read the way a docs generator reads it: every `@example`
 * block, and the `@category` of every export.
 *
 * Conventions, the same as Effect's docgen:
 * - a public module is a file of src/ that package.json "exports" publishes (`./Router` →
 *   dist/Router.js → src/Router.ts, and the entries index.ts and testing.ts), unless its module
 *   doc (the JSDoc before its first statement, when another JSDoc or an import follows) says
 *   `@internal`; src/internal/ is not published;
 * - only JSDoc of exported declarations counts (and their members: interface fields, class
 *   members), and none under an `@internal` tag;
 * - an example is self-contained: it imports what it uses, by package name
 *   ("effect-llm-router", "effect-llm-router/testing", "effect-llm-router/<Module>", "effect"),
 *   and compiles as an ES module of a user's project. Nothing is imported for it.
 * - `@example` runs to the next tag or the end of the comment; a fenced block (```ts) inside it
 *   is taken alone.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

export interface Example {
  /** src/Provider.ts */
  readonly file: string
  /** 1-based line of the `@example` tag. */
  readonly line: number
  /** `Provider.ChatRequest`, `Fake.Options.reply`, `testing (module)` */
  readonly name: string
  readonly code: string
  /** The source line of each line of `code`. */
  readonly lines: ReadonlyArray<number>
}

export interface Export {
  readonly file: string
  readonly line: number
  readonly name: string
  readonly categories: ReadonlyArray<string>
  readonly reexport: boolean
}

interface Doc {
  readonly pos: number
  readonly end: number
  readonly text: string
}

const isExported = (node: ts.Node): boolean =>
  ts.isExportDeclaration(node) || ts.isExportAssignment(node) ||
  (ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword))

const namesOf = (node: ts.Node): ReadonlyArray<string> => {
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText())
  if (ts.isExportDeclaration(node)) {
    if (node.exportClause === undefined) return ["*"]
    if (ts.isNamespaceExport(node.exportClause)) return [node.exportClause.name.text]
    return node.exportClause.elements.map((e) => e.name.text)
  }
  const name = (node as { readonly name?: ts.Node }).name
  return name !== undefined ? [name.getText()] : []
}

/** Every JSDoc comment of `source`, with the outermost node it documents. */
const docsOf = (source: ts.SourceFile): Array<{ doc: Doc; owner: ts.Node }> => {
  const seen = new Set<number>()
  const result: Array<{ doc: Doc; owner: ts.Node }> = []
  const visit = (node: ts.Node) => {
    for (const range of ts.getLeadingCommentRanges(source.text, node.pos) ?? []) {
      const text = source.text.slice(range.pos, range.end)
      if (!text.startsWith("/**") || seen.has(range.pos)) continue
      seen.add(range.pos)
      result.push({ doc: { pos: range.pos, end: range.end, text }, owner: node })
    }
    ts.forEachChild(node, visit)
  }
  ts.forEachChild(source, visit)
  return result
}

const tagsOf = (doc: Doc): ReadonlyArray<string> => [...doc.text.matchAll(/^\s*(?:\/\*\*|\*)?\s*@(\w+)/gm)].map((m) => m[1]!)

/** The comment's lines without the `/**`, ` * ` and `*\/` decoration, with their source lines. */
const linesOf = (source: ts.SourceFile, doc: Doc): Array<{ text: string; line: number }> => {
  const first = source.getLineAndCharacterOfPosition(doc.pos).line + 1
  return doc.text.split("\n").map((raw, i) => ({
    text: raw.replace(/^\s*\/\*\*\s?/, "").replace(/\s*\*\/\s*$/, "").replace(/^\s*\*(?: |$)/, ""),
    line: first + i
  }))
}

const examplesIn = (source: ts.SourceFile, doc: Doc, file: string, name: string): Array<Example> => {
  const examples: Array<Example> = []
  const lines = linesOf(source, doc)
  for (let i = 0; i < lines.length; i++) {
    const tag = /^@example\b\s?(.*)$/.exec(lines[i]!.text.trimStart())
    if (tag === null) continue
    let body = [...(tag[1]!.trim() === "" ? [] : [{ text: tag[1]!, line: lines[i]!.line }])]
    let j = i + 1
    for (; j < lines.length && !/^@\w+/.test(lines[j]!.text.trimStart()); j++) body.push(lines[j]!)
    const fence = body.findIndex((l) => /^\s*```/.test(l.text))
    if (fence >= 0) {
      const close = body.findIndex((l, k) => k > fence && /^\s*```/.test(l.text))
      body = body.slice(fence + 1, close < 0 ? undefined : close)
    }
    while (body.length > 0 && body[body.length - 1]!.text.trim() === "") body.pop()
    examples.push({ file, line: lines[i]!.line, name, code: body.map((l) => l.text).join("\n"), lines: body.map((l) => l.line) })
    i = j - 1
  }
  return examples
}

export interface Modules {
  readonly examples: ReadonlyArray<Example>
  readonly exports: ReadonlyArray<Export>
  readonly internalFiles: ReadonlyArray<string>
}

export interface PublicModule {
  /** `src/providers/Fake.ts` */
  readonly file: string
  /** Its subpath: `FakeProvider` for "effect-llm-router/FakeProvider"; `index` for the main entry. */
  readonly name: string
}

/** The source files of the modules package.json "exports" publishes. */
export const publicModules = (root: string): ReadonlyArray<PublicModule> => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
    readonly exports: Record<string, { readonly import: { readonly default: string } } | string>
  }
  return Object.entries(pkg.exports).flatMap(([subpath, target]) =>
    typeof target === "string" ? [] : [{
      file: target.import.default.replace(/^\.\/dist\//, "src/").replace(/\.js$/, ".ts"),
      name: subpath === "." ? "index" : subpath.slice(2)
    }]
  ).sort((a, b) => a.file.localeCompare(b.file))
}

/** Reads the modules' sources under `root`. */
export const readModules = (root: string, modules: ReadonlyArray<PublicModule>): Modules => {
  const examples: Array<Example> = []
  const exports: Array<Export> = []
  const internalFiles: Array<string> = []
  for (const { file, name: module } of modules) {
    const source = ts.createSourceFile(file, fs.readFileSync(path.join(root, file), "utf8"), ts.ScriptTarget.Latest, true)
    const docs = docsOf(source)
    const first = source.statements[0]
    const firstDocs = docs.filter((d) => d.owner === first)
    const isModuleDoc = (d: { doc: Doc; owner: ts.Node }) =>
      d.owner === first &&
      (d !== firstDocs[firstDocs.length - 1] || ts.isImportDeclaration(first) || ts.isImportEqualsDeclaration(first))
    const moduleDocs = docs.filter(isModuleDoc)
    if (moduleDocs.some((d) => tagsOf(d.doc).includes("internal"))) {
      internalFiles.push(file)
      continue
    }
    const statementDocs = new Map<ts.Node, Array<Doc>>()
    for (const d of docs) {
      if (isModuleDoc(d)) {
        examples.push(...examplesIn(source, d.doc, file, `${module} (module)`))
        continue
      }
      // The top-level statement this JSDoc belongs to, and the member path inside it.
      let statement: ts.Node = d.owner
      const members: Array<string> = []
      while (!ts.isSourceFile(statement.parent)) {
        const name = (statement as { readonly name?: ts.Node }).name
        if (name !== undefined) members.unshift(name.getText())
        statement = statement.parent
      }
      if (statement === d.owner) statementDocs.set(statement, [...(statementDocs.get(statement) ?? []), d.doc])
      if (!isExported(statement)) continue
      const topDocs = statementDocs.get(statement) ?? []
      if (tagsOf(d.doc).includes("internal") || topDocs.some((t) => tagsOf(t).includes("internal"))) continue
      const name = [`${module}.${namesOf(statement).join(", ")}`, ...members].join(".")
      examples.push(...examplesIn(source, d.doc, file, name))
    }
    // Exports and their categories (the namespace re-exports of the entries are not declarations).
    for (const statement of source.statements) {
      if (!isExported(statement)) continue
      if (ts.isExportDeclaration(statement) && statement.exportClause !== undefined && ts.isNamespaceExport(statement.exportClause)) continue
      const categories = (statementDocs.get(statement) ?? []).flatMap((doc) =>
        [...doc.text.matchAll(/@category\s+([^\n*]+)/g)].map((m) => m[1]!.trim())
      )
      const line = source.getLineAndCharacterOfPosition(statement.getStart()).line + 1
      for (const name of namesOf(statement)) {
        exports.push({ file, line, name: `${module}.${name}`, categories, reexport: ts.isExportDeclaration(statement) })
      }
    }
  }
  return { examples, exports, internalFiles }
}

/** The exports with no `@category` on any of their declarations (a const and its type share one). */
export const uncategorized = (exports: ReadonlyArray<Export>): ReadonlyArray<Export> => {
  const categorized = new Set(exports.filter((e) => e.categories.length > 0).map((e) => `${e.file}#${e.name}`))
  const seen = new Set<string>()
  return exports.filter((e) => {
    const key = `${e.file}#${e.name}`
    if (categorized.has(key) || seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** `src/Provider.ts:267` → `examples/Provider.L267.mts` */
export const exampleFile = (example: Example): string =>
  `examples/${example.file.replace(/^src\//, "").replace(/\.ts$/, "").replace(/\//g, ".")}.L${example.line}.mts`
