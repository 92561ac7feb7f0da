/* graderqueue JSON API page: reads the OpenAPI document from this same queue
   and shows every operation, with a form to try it. Plain DOM code: no
   framework, no markup parsed from strings (every text of the document goes
   in as a text node), no request to anywhere but this origin (the page's CSP
   says so too). */
(function () {
  "use strict";

  var TOKEN_KEY = "graderqueue-api-token";
  var METHODS = ["get", "post", "put", "patch", "delete"];
  var COMBOS = { oneOf: "one of", anyOf: "any of", allOf: "all of" };
  var FACTS = [
    ["minimum", "\u2265 "], ["exclusiveMinimum", "> "], ["maximum", "\u2264 "],
    ["exclusiveMaximum", "< "], ["minLength", "length \u2265 "], ["maxLength", "length \u2264 "],
    ["minItems", "items \u2265 "], ["maxItems", "items \u2264 "], ["pattern", "pattern "],
    ["default", "default "]
  ];
  var root = document.getElementById("api-docs");
  var toc = document.getElementById("toc");
  var tokenInput = document.getElementById("token");
  var spec = null;  // the OpenAPI document, once loaded
  var base = "";    // its first server's URL: where "Try it" sends requests

  /* -- small helpers -------------------------------------------------- */

  // el("p", {class: "x"}, ["text", child]): an element, its attributes, its children.
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "value") node.value = value;
      else node.setAttribute(key, value === true ? "" : value);
    });
    append(node, children);
    return node;
  }

  function append(node, children) {
    [].concat(children === undefined ? [] : children).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) append(node, child);
      else node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  // Descriptions: paragraphs split by blank lines, `code` in backticks; nothing else is read.
  function prose(text, cls) {
    if (!text) return null;
    return el("div", { class: "prose" + (cls ? " " + cls : "") },
      String(text).split(/\n\s*\n/).map(function (para) {
        return el("p", {}, para.split("`").map(function (part, i) {
          return i % 2 ? el("code", {}, part) : part;
        }));
      }));
  }

  function json(value) { return JSON.stringify(value); }
  function slug(text) { return String(text).replace(/[^A-Za-z0-9_-]+/g, "-"); }

  function storage(action, value) {
    try {  // storage may be off (private modes, policies): the field still works, unsaved
      if (action === "get") return window.sessionStorage.getItem(TOKEN_KEY) || "";
      if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) { return ""; }
    return "";
  }

  /* -- the document: references and schemas ---------------------------- */

  // Only references inside the document ("#/components/..."): this page fetches nothing else.
  function lookup(ref) {
    if (typeof ref !== "string" || ref.indexOf("#/") !== 0) return null;
    return ref.slice(2).split("/").reduce(function (node, part) {
      return node && node[part.replace(/~1/g, "/").replace(/~0/g, "~")];
    }, spec);
  }

  function deref(node) {
    for (var hops = 0; node && node.$ref && hops < 20; hops++) node = lookup(node.$ref);
    return node || {};
  }

  function refName(ref) { return ref.split("/").pop(); }

  function typeText(s) {
    if (s.const !== undefined) return "const " + json(s.const);
    var type = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
    if (!type) type = s.properties ? "object" : s.items ? "array" : "";
    return type + (s.format ? " (" + s.format + ")" : "");
  }

  function facts(s) {
    var out = [];
    if (s.enum) out.push("one of " + s.enum.map(json).join(", "));
    FACTS.forEach(function (fact) {
      if (s[fact[0]] !== undefined) out.push(fact[1] + (fact[0] === "pattern" ? s.pattern : json(s[fact[0]])));
    });
    if (s.additionalProperties === false && s.properties) out.push("no other properties");
    if (s.deprecated) out.push("deprecated");
    return out.map(function (text) { return el("span", { class: "fact" }, text); });
  }

  // A schema as a nested, readable tree. `label` starts its first line (a property's
  // name); `ctx.shown` lists the references already drawn, drawn once (and no cycle).
  function schemaView(schema, ctx, label) {
    ctx = ctx || { shown: [] };
    var head = el("div", { class: "schema-head" }, label);
    var box = el("div", { class: "schema" }, head);
    describe(head, box, schema, ctx);
    return box;
  }

  function describe(head, box, schema, ctx) {
    var s = schema || {};
    if (s.$ref) {
      append(head, el("span", { class: "ref" }, refName(s.$ref)));
      if (ctx.shown.indexOf(s.$ref) >= 0) return append(head, el("span", { class: "note" }, "(as above)"));
      ctx.shown.push(s.$ref);
      s = lookup(s.$ref) || {};
    }
    var type = typeText(s);
    var list = s.items && /\barray\b/.test(type);
    if (type) append(head, el("span", { class: "type" }, list ? type.replace("array", "array of") : type));
    append(head, facts(s));
    append(box, prose(s.description, "desc"));
    if (list) describe(head, box, s.items, ctx);  // "array of Job": the items' fields right below
    Object.keys(COMBOS).forEach(function (key) {
      if (!Array.isArray(s[key])) return;
      append(box, el("div", { class: "combo" }, [
        el("span", { class: "combo-label" }, COMBOS[key]),
        s[key].map(function (alt) { return schemaView(alt, ctx); })
      ]));
    });
    if (s.properties) {
      var required = s.required || [];
      append(box, el("ul", { class: "props" }, Object.keys(s.properties).map(function (prop) {
        return el("li", {}, schemaView(s.properties[prop], ctx, [
          el("code", { class: "prop" }, prop),
          required.indexOf(prop) >= 0 ? el("span", { class: "req" }, "required") : null
        ]));
      })));
    }
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      append(box, el("div", { class: "combo" }, [el("span", { class: "combo-label" }, "other properties"), schemaView(s.additionalProperties, ctx)]));
    }
    if (s.example !== undefined) append(box, el("pre", { class: "example" }, JSON.stringify(s.example, null, 2)));
    return box;
  }

  // A value to start a request body from: an example when the schema has one, else a skeleton.
  function skeleton(s, depth) {
    if (!s || depth > 8) return null;
    if (s.$ref) return skeleton(lookup(s.$ref), depth + 1);
    if (s.example !== undefined) return s.example;
    if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
    if (s.default !== undefined) return s.default;
    if (s.const !== undefined) return s.const;
    if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
    var alternatives = s.oneOf || s.anyOf;
    if (alternatives && alternatives.length) return skeleton(alternatives[0], depth + 1);
    if (s.allOf) {
      return s.allOf.reduce(function (acc, part) { return Object.assign(acc, skeleton(part, depth + 1)); }, {});
    }
    var type = Array.isArray(s.type) ? (s.type.filter(function (t) { return t !== "null"; })[0] || "null") : s.type;
    if (!type) type = s.properties ? "object" : s.items ? "array" : "";
    if (type === "object") {
      // Only the required fields when some are: a body that works as it stands.
      var keys = (s.required && s.required.length) ? s.required : Object.keys(s.properties || {});
      return keys.reduce(function (obj, key) {
        obj[key] = skeleton((s.properties || {})[key] || {}, depth + 1);
        return obj;
      }, {});
    }
    if (type === "array") return s.items ? [skeleton(s.items, depth + 1)] : [];
    if (type === "string") return s.format === "date-time" ? new Date().toISOString() : "";
    if (type === "integer" || type === "number") return s.minimum !== undefined ? s.minimum : 0;
    if (type === "boolean") return false;
    return null;
  }

  function mediaExample(media) {
    if (media.example !== undefined) return media.example;
    var named = media.examples && Object.keys(media.examples)[0];
    if (named) return deref(media.examples[named]).value;
    return skeleton(media.schema, 0);
  }

  /* -- one operation ---------------------------------------------------- */

  function parametersOf(item, op) {
    var byKey = {};
    (item.parameters || []).concat(op.parameters || []).forEach(function (p) {
      p = deref(p);
      byKey[p.in + ":" + p.name] = p;  // the operation's own override the path's
    });
    return Object.keys(byKey).map(function (key) { return byKey[key]; });
  }

  function paramsView(params) {
    if (!params.length) return null;
    return el("section", { class: "block" }, [el("h4", {}, "Parameters"),
      el("ul", { class: "params" }, params.map(function (p) {
        var schema = p.schema || {};
        return el("li", {}, [
          el("div", { class: "param-head" }, [
            el("code", { class: "prop" }, p.name),
            el("span", { class: "in" }, p.in),
            p.required ? el("span", { class: "req" }, "required") : null,
            el("span", { class: "type" }, typeText(deref(schema))),
            facts(deref(schema))
          ]),
          prose(p.description || deref(schema).description, "desc")
        ]);
      }))]);
  }

  // `named`: say each media type (a response's summary already says its only one).
  function contentView(content, named) {
    var types = Object.keys(content || {});
    return types.map(function (type) {
      return el("div", { class: "media" }, [
        named || types.length > 1 ? el("div", { class: "media-type" }, type) : null,
        content[type].schema ? schemaView(content[type].schema) : null
      ]);
    });
  }

  function bodyView(requestBody) {
    if (!requestBody) return null;
    var rb = deref(requestBody);
    return el("section", { class: "block" }, [
      el("h4", {}, ["Request body ", el("span", { class: rb.required ? "req" : "opt" }, rb.required ? "required" : "optional")]),
      prose(rb.description, "desc"),
      contentView(rb.content, true)
    ]);
  }

  function responsesView(responses) {
    var codes = Object.keys(responses || {}).sort();
    var opened = false;
    return el("section", { class: "block" }, [el("h4", {}, "Responses"), codes.map(function (code) {
      var r = deref(responses[code]);
      var open = !opened && /^2/.test(code);
      opened = opened || open;
      return el("details", { class: "response", open: open }, [
        el("summary", {}, [
          el("span", { class: "code code-" + code.charAt(0) }, code),
          " ", r.description || "",
          el("span", { class: "media-list" }, Object.keys(r.content || {}).join(", "))
        ]),
        r.content ? contentView(r.content, false) : el("p", { class: "note" }, "No body."),
        r.headers ? el("p", { class: "note" }, "Headers: " + Object.keys(r.headers).join(", ")) : null
      ]);
    })]);
  }

  function needsCredentials(op) {
    var security = op.security !== undefined ? op.security : spec.security;
    return Array.isArray(security) && security.length > 0;
  }

  function operationView(path, method, item, op) {
    var params = parametersOf(item, op);
    var id = "op-" + slug(op.operationId || method + path);
    return el("details", { class: "op method-" + method, id: id, "data-path": path, "data-method": method }, [
      el("summary", {}, [
        el("span", { class: "method" }, method.toUpperCase()),
        el("code", { class: "path" }, path),
        el("span", { class: "op-summary" }, op.summary || ""),
        needsCredentials(op) ? null : el("span", { class: "badge" }, "no credentials")
      ]),
      el("div", { class: "op-body" }, [
        op.deprecated ? el("p", { class: "warn" }, "Deprecated.") : null,
        prose(op.description),
        paramsView(params),
        bodyView(op.requestBody),
        responsesView(op.responses),
        tryView(path, method, op, params)
      ])
    ]);
  }

  /* -- "Try it" --------------------------------------------------------- */

  function paramInput(p, formId) {
    var schema = deref(p.schema || {});
    var id = formId + "-" + p.in + "-" + slug(p.name);
    var choices = schema.enum || (schema.type === "boolean" ? [true, false] : null);
    var input = choices
      ? el("select", { id: id, required: !!p.required }, [el("option", { value: "" }, "\u2014")].concat(
        choices.map(function (c) { return el("option", { value: String(c) }, String(c)); })))
      : el("input", {
        id: id, required: !!p.required, spellcheck: "false",
        placeholder: p.example !== undefined ? String(p.example) : typeText(schema)
      });
    input.dataset.name = p.name;
    input.dataset.in = p.in;
    return el("div", { class: "field" }, [el("label", { for: id }, [p.name, el("span", { class: "in" }, p.in)]), input]);
  }

  function tryView(path, method, op, params) {
    var formId = "try-" + slug(op.operationId || method + path);
    var usable = params.filter(function (p) { return p.in === "path" || p.in === "query" || p.in === "header"; });
    var rb = op.requestBody ? deref(op.requestBody) : null;
    var mediaType = rb && (rb.content && rb.content["application/json"] ? "application/json" : Object.keys(rb.content || {})[0]);
    var example = rb && mediaType ? mediaExample(rb.content[mediaType]) : null;
    var text = example === null || example === undefined ? "" : JSON.stringify(example, null, 2);
    var textarea = rb ? el("textarea", {
      id: formId + "-body", class: "body-input", spellcheck: "false", rows: Math.min(16, text.split("\n").length + 1),
      value: rb.required ? text : "", placeholder: rb.required ? "" : text || "(optional)"
    }) : null;
    var stop = el("button", { type: "button", class: "stop", hidden: true }, "Stop");
    var result = el("div", { class: "result", hidden: true, "aria-live": "polite" });
    var running = { controller: null };  // a new request ends the one still streaming
    var form = el("form", { class: "try", id: formId }, [
      el("h4", {}, "Try it"),
      usable.length ? el("div", { class: "fields" }, usable.map(function (p) { return paramInput(p, formId); })) : null,
      textarea ? el("div", { class: "field wide" }, [el("label", { for: textarea.id }, ["Body ", el("span", { class: "in" }, mediaType)]), textarea]) : null,
      el("div", { class: "buttons" }, [el("button", { type: "submit", class: "send" }, "Send " + method.toUpperCase()), stop]),
      result
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send({
        path: path, method: method, op: op, form: form, textarea: textarea,
        mediaType: mediaType, stop: stop, result: result, running: running
      });
    });
    return form;
  }

  function requestFrom(ctx) {
    var values = {};
    var query = new URLSearchParams();
    var headers = { Accept: acceptFor(ctx.op) };
    ctx.form.querySelectorAll("[data-in]").forEach(function (input) {
      var value = input.value.trim();
      if (input.dataset.in === "path") values[input.dataset.name] = value;
      else if (value && input.dataset.in === "query") query.append(input.dataset.name, value);
      else if (value && input.dataset.in === "header") headers[input.dataset.name] = value;
    });
    var url = base + ctx.path.replace(/\{([^}]+)\}/g, function (all, name) {
      return encodeURIComponent(values[name] || "");
    }) + (query.toString() ? "?" + query.toString() : "");
    var body = ctx.textarea ? ctx.textarea.value.trim() : "";
    if (body && /json/.test(ctx.mediaType)) JSON.parse(body);  // refuse a typo before sending
    if (body) headers["Content-Type"] = ctx.mediaType;
    var token = tokenInput.value.trim();
    if (token && needsCredentials(ctx.op)) headers.Authorization = "Bearer " + token;
    return { url: url, headers: headers, body: body || undefined };
  }

  // What the operation answers (so a stream is asked for as one), problems too.
  function acceptFor(op) {
    var types = [];
    Object.keys(op.responses || {}).forEach(function (code) {
      Object.keys(deref(op.responses[code]).content || {}).forEach(function (type) {
        if (types.indexOf(type) < 0) types.push(type);
      });
    });
    return types.length ? types.join(", ") : "*/*";
  }

  function shellQuote(text) { return "'" + String(text).replace(/'/g, "'\\''") + "'"; }

  function curlFor(method, req) {
    var parts = ["curl", "-X", method.toUpperCase(), shellQuote(new URL(req.url, location.href).href)];
    Object.keys(req.headers).forEach(function (name) {
      parts.push("-H", name === "Authorization" ? '"Authorization: Bearer $TOKEN"' : shellQuote(name + ": " + req.headers[name]));
    });
    if (req.body) parts.push("--data", shellQuote(req.body));
    return parts.join(" ");
  }

  async function send(ctx) {
    var req;
    if (ctx.running.controller) ctx.running.controller.abort();
    ctx.running.controller = null;
    ctx.result.hidden = false;
    ctx.result.replaceChildren();
    try {
      req = requestFrom(ctx);
    } catch (err) {
      append(ctx.result, el("p", { class: "error" }, "The body is not valid JSON: " + err.message));
      return;
    }
    var controller = ctx.running.controller = new AbortController();
    var onStop = function () { controller.abort(); };
    ctx.stop.hidden = false;
    ctx.stop.addEventListener("click", onStop);
    append(ctx.result, [
      el("div", { class: "request-line" }, [el("span", { class: "method" }, ctx.method.toUpperCase()), " ", el("code", {}, req.url)]),
      el("details", { class: "curl" }, [el("summary", {}, "as curl"), el("pre", {}, curlFor(ctx.method, req))])
    ]);
    var started = performance.now();
    try {
      var res = await fetch(req.url, {
        method: ctx.method.toUpperCase(), headers: req.headers, body: req.body,
        signal: controller.signal, cache: "no-store", credentials: "same-origin"
      });
      if (ctx.running.controller !== controller) return;
      showHead(ctx.result, res, Math.round(performance.now() - started));
      var type = res.headers.get("Content-Type") || "";
      if (/^text\/event-stream/i.test(type) && res.body) await showStream(ctx.result, res, controller.signal);
      else showBody(ctx.result, type, await res.text());
    } catch (err) {
      if (ctx.running.controller !== controller) return;  // replaced by a newer request
      append(ctx.result, el("p", { class: controller.signal.aborted ? "note" : "error" },
        controller.signal.aborted ? "Stopped." : "The request failed: " + err.message));
    } finally {
      ctx.stop.removeEventListener("click", onStop);
      if (ctx.running.controller === controller) {
        ctx.stop.hidden = true;
        ctx.running.controller = null;
      }
    }
  }

  function showHead(out, res, ms) {
    var rows = [];
    res.headers.forEach(function (value, name) { rows.push(el("li", {}, [el("b", {}, name + ": "), value])); });
    append(out, [
      el("div", { class: "status-line" }, [
        el("span", { class: "code code-" + String(res.status).charAt(0) }, String(res.status)),
        " " + (res.statusText || ""), el("span", { class: "note" }, ms + " ms")
      ]),
      el("details", { class: "headers" }, [el("summary", {}, "Headers (" + rows.length + ")"), el("ul", {}, rows)])
    ]);
  }

  // JSON indented (an event on one line when it fits: a stream is read down the page).
  function pretty(text, oneLine) {
    try {
      var value = JSON.parse(text);
      var line = JSON.stringify(value);
      return oneLine && line.length <= 100 ? line : JSON.stringify(value, null, 2);
    } catch (err) { return text; }  // not JSON after all: as it came
  }

  function showBody(out, type, text) {
    if (!text) return append(out, el("p", { class: "note" }, "Empty body."));
    append(out, el("pre", { class: "response-body" }, /json/i.test(type) ? pretty(text) : text));
  }

  // Server-sent events as they arrive: blocks separated by a blank line, "field: value" lines.
  async function showStream(out, res, signal) {
    var list = el("ol", { class: "events" });
    var state = el("p", { class: "note stream-state" }, "Streaming\u2026 (Stop ends it)");
    append(out, [state, list]);
    var reader = res.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    try {
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer = (buffer + decoder.decode(chunk.value, { stream: true })).replace(/\r\n?/g, "\n");
        var blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        blocks.forEach(function (block) { if (block) append(list, eventView(block)); });
        list.scrollTop = list.scrollHeight;  // the newest stays in sight
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
    var count = list.querySelectorAll(".event").length;
    state.textContent = (signal.aborted ? "Stopped" : "The stream ended") + " after " + count + " event" + (count === 1 ? "." : "s.");
  }

  function eventView(block) {
    var ev = { data: [], comments: [] };
    block.split("\n").forEach(function (line) {
      if (line.charAt(0) === ":") { ev.comments.push(line.slice(1).trim()); return; }
      var colon = line.indexOf(":");
      var field = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") ev.data.push(value);
      else if (field === "event" || field === "id" || field === "retry") ev[field] = value;
    });
    var time = new Date().toTimeString().slice(0, 8);
    if (!ev.data.length && !ev.event) {
      return el("li", { class: "comment" }, [el("span", { class: "when" }, time), ": " + ev.comments.join(" ")]);
    }
    return el("li", { class: "event" }, [
      el("span", { class: "when" }, time),
      el("span", { class: "event-name" }, ev.event || "message"),
      ev.id ? el("span", { class: "note" }, "id " + ev.id) : null,
      el("pre", {}, pretty(ev.data.join("\n"), true))
    ]);
  }

  /* -- the page --------------------------------------------------------- */

  function operationsByTag() {
    var groups = {};
    var order = (spec.tags || []).map(function (t) { return t.name; });
    Object.keys(spec.paths || {}).forEach(function (path) {
      var item = deref(spec.paths[path]);
      METHODS.forEach(function (method) {
        if (!item[method]) return;
        var tag = (item[method].tags || [])[0] || "other";
        if (order.indexOf(tag) < 0) order.push(tag);
        (groups[tag] = groups[tag] || []).push({ path: path, method: method, item: item, op: item[method] });
      });
    });
    return order.filter(function (tag) { return groups[tag]; }).map(function (tag) {
      var info = (spec.tags || []).filter(function (t) { return t.name === tag; })[0] || {};
      return { name: tag, description: info.description, ops: groups[tag] };
    });
  }

  function render() {
    var info = spec.info || {};
    document.getElementById("api-title").textContent = info.title || "API";
    document.getElementById("api-version").textContent = info.version ? "v" + info.version : "";
    document.title = info.title || document.title;
    base = ((spec.servers || [])[0] || {}).url || "";
    var schemes = (spec.components || {}).securitySchemes || {};
    var groups = operationsByTag();
    root.replaceChildren();
    append(root, [
      el("section", { class: "intro" }, [
        prose(info.description),
        Object.keys(schemes).map(function (name) {
          return el("div", { class: "auth-note" }, [el("h4", {}, "Credentials: " + name), prose(schemes[name].description)]);
        }),
        el("p", { class: "note" }, ["The description itself: ", el("a", { href: root.dataset.spec }, root.dataset.spec)])
      ]),
      groups.map(function (group) {
        return el("section", { class: "tag", id: "tag-" + slug(group.name) }, [
          el("h2", {}, group.name), prose(group.description),
          group.ops.map(function (o) { return operationView(o.path, o.method, o.item, o.op); })
        ]);
      })
    ]);
    toc.replaceChildren();
    append(toc, groups.map(function (group) {
      return el("div", { class: "toc-group" }, [
        el("a", { class: "toc-tag", href: "#tag-" + slug(group.name) }, group.name),
        el("ul", {}, group.ops.map(function (o) {
          return el("li", {}, el("a", { href: "#op-" + slug(o.op.operationId || o.method + o.path) }, [
            el("span", { class: "method method-" + o.method }, o.method.toUpperCase()), " ", o.path
          ]));
        }))
      ]);
    }));
    openFromHash();
  }

  // A link to an operation opens it.
  function openFromHash() {
    var target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      target.scrollIntoView();
    }
  }

  function setUpToken() {
    var show = document.getElementById("token-show");
    tokenInput.value = storage("get");
    tokenInput.addEventListener("input", function () { storage("set", tokenInput.value.trim()); });
    document.getElementById("auth").addEventListener("submit", function (event) { event.preventDefault(); });
    document.getElementById("token-clear").addEventListener("click", function () {
      tokenInput.value = "";
      storage("set", "");
      tokenInput.focus();
    });
    show.addEventListener("click", function () {
      var shown = tokenInput.type === "password";
      tokenInput.type = shown ? "text" : "password";
      show.textContent = shown ? "Hide" : "Show";
      show.setAttribute("aria-pressed", String(shown));
    });
  }

  setUpToken();
  window.addEventListener("hashchange", openFromHash);
  toc.addEventListener("click", function (event) {
    var link = event.target.closest("a");
    var target = link && document.getElementById(link.hash.slice(1));
    if (target && target.tagName === "DETAILS") target.open = true;
  });
  fetch(root.dataset.spec, { headers: { Accept: "application/json" }, cache: "no-cache" })
    .then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    })
    .then(function (doc) { spec = doc; render(); })
    .catch(function (err) {
      var status = document.getElementById("status");
      status.className = "status error";
      status.textContent = "Could not show the OpenAPI document: " + err.message;
    });
}());
