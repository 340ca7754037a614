// Drives the real `centrifuge` npm SDK against a wshub gateway, for tests/e2e/test_js_sdk.py.
//
//   node driver.mjs <scenario> <ws-url> [params-json]
//
// params (JSON, also accepted as the WSHUB_E2E_PARAMS environment variable): tokens
// (`token`, `token2`), `channel`, `timeout` (ms, default 15000) and scenario options.
//
// Everything that happens is printed to stdout as one JSON object per line, `ev` naming
// it. When a scenario needs the test (a fresh token, or a server-side action such as
// closing the connection or publishing), it prints {"ev":"request","id":N,"what":...}
// and waits for {"id":N,...} on stdin. The last line is {"ev":"done"} (exit 0) or
// {"ev":"fail","error":...} (exit 1).

import { createInterface } from "node:readline";
import { Centrifuge } from "centrifuge";
import WebSocket from "ws";

const [scenarioName, url, rawParams] = process.argv.slice(2);
const P = JSON.parse(rawParams || process.env.WSHUB_E2E_PARAMS || "{}");
const TIMEOUT = P.timeout || 15000;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(error) {
  emit({ ev: "fail", error: String(error && error.stack ? error.stack : JSON.stringify(error)) });
  process.exit(1);
}

// -- requests to the test, answered on stdin ---------------------------------------------

let nextRequestId = 0;
const pending = new Map();
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  const resolve = pending.get(msg.id);
  if (resolve) {
    pending.delete(msg.id);
    resolve(msg);
  }
});

function request(what, extra = {}) {
  const id = ++nextRequestId;
  return new Promise((resolve) => {
    pending.set(id, resolve);
    emit({ ev: "request", id, what, ...extra });
  });
}

async function requestToken(kind, channel) {
  const reply = await request("token", channel ? { kind, channel } : { kind });
  return reply.token;
}

// -- helpers -----------------------------------------------------------------------------

function client(name, opts = {}) {
  const c = new Centrifuge(url, {
    websocket: WebSocket,
    timeout: 3000,
    minReconnectDelay: 300,
    maxReconnectDelay: 1000,
    ...opts,
  });
  c.on("connecting", (ctx) => emit({ ev: "connecting", who: name, code: ctx.code, reason: ctx.reason }));
  c.on("connected", (ctx) => emit({ ev: "connected", who: name, client: ctx.client, data: ctx.data }));
  c.on("disconnected", (ctx) =>
    emit({ ev: "disconnected", who: name, code: ctx.code, reason: ctx.reason }),
  );
  c.on("error", (ctx) => emit({ ev: "client_error", who: name, type: ctx.type, error: ctx.error }));
  // Server-side subscriptions.
  c.on("subscribed", (ctx) => emit({ ev: "server_subscribed", who: name, ...subscribedFields(ctx) }));
  c.on("unsubscribed", (ctx) => emit({ ev: "server_unsubscribed", who: name, channel: ctx.channel }));
  c.on("publication", (ctx) =>
    emit({ ev: "server_publication", who: name, channel: ctx.channel, data: ctx.data, offset: ctx.offset }),
  );
  return c;
}

function subscribedFields(ctx) {
  return {
    channel: ctx.channel,
    recoverable: ctx.recoverable,
    positioned: ctx.positioned,
    wasRecovering: ctx.wasRecovering,
    recovered: ctx.recovered,
    hasRecoveredPublications: ctx.hasRecoveredPublications,
    streamPosition: ctx.streamPosition,
  };
}

function subscription(c, name, channel, opts = {}) {
  const s = c.newSubscription(channel, opts);
  s.on("subscribing", (ctx) => emit({ ev: "subscribing", who: name, channel, code: ctx.code }));
  s.on("subscribed", (ctx) => emit({ ev: "subscribed", who: name, ...subscribedFields(ctx) }));
  s.on("unsubscribed", (ctx) =>
    emit({ ev: "unsubscribed", who: name, channel, code: ctx.code, reason: ctx.reason }),
  );
  s.on("error", (ctx) => emit({ ev: "sub_error", who: name, channel, type: ctx.type, error: ctx.error }));
  s.on("publication", (ctx) =>
    emit({
      ev: "publication",
      who: name,
      channel,
      data: ctx.data,
      offset: ctx.offset,
      user: ctx.info ? ctx.info.user : undefined,
    }),
  );
  s.on("join", (ctx) => emit({ ev: "join", who: name, channel, user: ctx.info.user, client: ctx.info.client }));
  s.on("leave", (ctx) => emit({ ev: "leave", who: name, channel, user: ctx.info.user, client: ctx.info.client }));
  return s;
}

/** Resolve with the args of the first `event` of `emitter` that satisfies `pred`. */
function waitEvent(emitter, event, pred = () => true, ms = TIMEOUT) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timeout waiting for ${event}`));
    }, ms);
    function handler(ctx) {
      if (!pred(ctx)) return;
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(ctx);
    }
    emitter.on(event, handler);
  });
}

/** Resolve when `items` has `n` entries (checked every 20 ms). */
async function waitCount(items, n, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  while (items.length < n) {
    if (Date.now() > deadline) throw new Error(`timeout: ${items.length} of ${n}`);
    await sleep(20);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function errorFields(e) {
  return { code: e.code, message: e.message, temporary: e.temporary === true };
}

// -- scenarios ---------------------------------------------------------------------------

const scenarios = {
  /** Connect with a JWT, call the echo RPC, disconnect. */
  async connect() {
    const c = client("a", { token: P.token });
    const connected = waitEvent(c, "connected");
    c.connect();
    await connected;
    const r = await c.rpc("echo", { hello: "world" });
    emit({ ev: "rpc", method: "echo", data: r.data });
    c.disconnect();
  },

  /** Connect without a token: report whether connected or disconnected (and the code). */
  async anonymous() {
    const c = client("a");
    const outcome = Promise.race([waitEvent(c, "connected"), waitEvent(c, "disconnected")]);
    c.connect();
    await outcome;
    c.disconnect();
  },

  /** b subscribes, a publishes two messages, b gets them (with a's user in info). */
  async pubsub() {
    const a = client("a", { token: P.token });
    const b = client("b", { token: P.token2 });
    const got = [];
    const sb = subscription(b, "b", P.channel);
    sb.on("publication", (ctx) => got.push(ctx.data));
    a.connect();
    b.connect();
    const subscribed = waitEvent(sb, "subscribed");
    sb.subscribe();
    await subscribed;
    await a.ready(TIMEOUT);
    await a.publish(P.channel, { n: 1 });
    await a.publish(P.channel, { n: 2 });
    emit({ ev: "published", who: "a", count: 2 });
    await waitCount(got, 2);
    a.disconnect();
    b.disconnect();
  },

  /** Presence with join/leave (the joinLeave subscription option). */
  async presence() {
    const a = client("a", { token: P.token });
    const b = client("b", { token: P.token2 });
    const sa = subscription(a, "a", P.channel, { joinLeave: true });
    const sb = subscription(b, "b", P.channel, { joinLeave: true });
    a.connect();
    const aSubscribed = waitEvent(sa, "subscribed");
    sa.subscribe();
    await aSubscribed;
    const bJoined = waitEvent(sa, "join", (ctx) => ctx.info.user === P.user2);
    b.connect();
    sb.subscribe();
    await bJoined;
    const p = await sa.presence();
    const users = Object.values(p.clients).map((ci) => ci.user).sort();
    emit({ ev: "presence", users, clients: Object.keys(p.clients).length });
    const st = await sa.presenceStats();
    emit({ ev: "presence_stats", numClients: st.numClients, numUsers: st.numUsers });
    const bLeft = waitEvent(sa, "leave", (ctx) => ctx.info.user === P.user2);
    b.disconnect();
    await bLeft;
    const p2 = await sa.presence();
    emit({ ev: "presence", users: Object.values(p2.clients).map((ci) => ci.user).sort() });
    a.disconnect();
  },

  /** Publish 5, then read history with limit, since and reverse. */
  async history() {
    const c = client("a", { token: P.token });
    c.connect();
    await c.ready(TIMEOUT);
    for (let n = 1; n <= 5; n++) await c.publish(P.channel, { n });
    const ns = (r) => r.publications.map((p) => p.data.n);
    const offsets = (r) => r.publications.map((p) => p.offset);
    const top = await c.history(P.channel);
    emit({ ev: "history", q: "top", ns: ns(top), offset: top.offset, epoch: top.epoch });
    const first = await c.history(P.channel, { limit: 2 });
    emit({ ev: "history", q: "limit2", ns: ns(first), offsets: offsets(first) });
    const all = await c.history(P.channel, { limit: -1 });
    emit({ ev: "history", q: "all", ns: ns(all), offsets: offsets(all) });
    const since = { offset: first.publications[1].offset, epoch: first.epoch };
    const after = await c.history(P.channel, { since, limit: 10 });
    emit({ ev: "history", q: "since2", ns: ns(after) });
    const rev = await c.history(P.channel, { limit: 2, reverse: true });
    emit({ ev: "history", q: "reverse2", ns: ns(rev) });
    const revSince = await c.history(P.channel, {
      since: { offset: all.publications[3].offset, epoch: all.epoch },
      limit: -1,
      reverse: true,
    });
    emit({ ev: "history", q: "reverse_since4", ns: ns(revSince) });
    try {
      await c.history(P.channel, { since: { offset: 1, epoch: "not-the-epoch" }, limit: 10 });
      emit({ ev: "history", q: "bad_epoch", ok: true });
    } catch (e) {
      emit({ ev: "history_error", q: "bad_epoch", ...errorFields(e) });
    }
    c.disconnect();
  },

  /** RPC: echo works, a raising handler gives error 100, the connection goes on. */
  async rpc() {
    const c = client("a", { token: P.token });
    c.connect();
    await c.ready(TIMEOUT);
    const r1 = await c.rpc("echo", { n: 1 });
    emit({ ev: "rpc", method: "echo", data: r1.data });
    try {
      await c.rpc("boom", { n: 2 });
      emit({ ev: "rpc", method: "boom", ok: true });
    } catch (e) {
      emit({ ev: "rpc_error", method: "boom", ...errorFields(e) });
    }
    try {
      await c.rpc("no-such-method", {});
      emit({ ev: "rpc", method: "no-such-method", ok: true });
    } catch (e) {
      emit({ ev: "rpc_error", method: "no-such-method", ...errorFields(e) });
    }
    const r2 = await c.rpc("echo", { n: 3 });
    emit({ ev: "rpc", method: "echo", data: r2.data, state: c.state });
    c.disconnect();
  },

  /** A short-lived token refreshed through getToken: the connection outlives it. */
  async refresh() {
    let refreshes = 0;
    const c = client("a", {
      token: P.token,
      getToken: async () => {
        refreshes++;
        return requestToken("connection");
      },
    });
    let current = "";
    c.on("connected", (ctx) => (current = ctx.client));
    const connected = waitEvent(c, "connected");
    c.connect();
    const ctx = await connected;
    // Until `refreshes` tokens were asked for and the wall clock passed `until` (ms).
    const deadline = Date.now() + TIMEOUT;
    while (refreshes < (P.refreshes || 1) || Date.now() < (P.until || 0)) {
      if (Date.now() > deadline) throw new Error(`${refreshes} refreshes only`);
      await sleep(50);
    }
    const r = await c.rpc("echo", { still: "here" });
    emit({ ev: "after_refresh", refreshes, state: c.state, client: current, first: ctx.client, data: r.data });
    c.disconnect();
  },

  /** A short-lived token that the app fails to refresh (its getToken rejects, so the SDK
   *  retries it only after seconds): the server closes the connection when it expires. */
  async expire() {
    let asked = 0;
    const c = client("a", {
      token: P.token,
      getToken: async () => {
        asked++;
        throw new Error("token service unavailable");
      },
    });
    const expired = waitEvent(c, "connecting", (ctx) => ctx.code !== 0);
    c.connect();
    await expired;
    emit({ ev: "token_asked", count: asked });
    c.disconnect();
  },

  /** A private channel: refused without a token, subscribed with one, then sub_refresh. */
  async subtoken() {
    const c = client("a", { token: P.token });
    c.connect();
    const s1 = subscription(c, "a", P.channel);
    const refused = waitEvent(s1, "unsubscribed");
    s1.subscribe();
    await refused;
    c.removeSubscription(s1);
    let tokens = 0;
    const got = [];
    const s2 = subscription(c, "a", P.channel, {
      getToken: async (ctx) => {
        tokens++;
        return requestToken("subscription", ctx.channel);
      },
    });
    s2.on("publication", (ctx) => got.push(ctx.data));
    const subscribed = waitEvent(s2, "subscribed");
    s2.subscribe();
    await subscribed;
    const deadline = Date.now() + TIMEOUT;
    while (tokens < 1 + (P.refreshes || 1)) {
      if (Date.now() > deadline) throw new Error("no sub refresh");
      await sleep(50);
    }
    await sleep(P.settle || 300);
    await s2.publish({ after: "refresh" });
    await waitCount(got, 1);
    emit({ ev: "after_sub_refresh", tokens, state: s2.state, data: got[0] });
    c.disconnect();
  },

  /** Recovery: the server drops the connection, publishes while it is away, the client
   *  reconnects and gets exactly the missed publications, in order, then a live one. */
  async recovery() {
    const c = client("a", { token: P.token });
    const offsets = [];
    const s = subscription(c, "a", P.channel, { recoverable: true });
    s.on("publication", (ctx) => offsets.push(ctx.offset));
    const subscribed = waitEvent(s, "subscribed");
    c.connect();
    s.subscribe();
    await subscribed;
    const resubscribed = waitEvent(s, "subscribed");
    await request("away");
    await resubscribed;
    await waitCount(offsets, P.missed || 3);
    await request("live");
    await waitCount(offsets, (P.missed || 3) + 1);
    await sleep(300); // any duplicate would arrive meanwhile
    c.disconnect();
  },

  /** Server-side subscriptions from the token's `channels` claim; with `recover` the
   *  server drops the connection and publishes while the client is away. */
  async server_side() {
    const c = client("a", { token: P.token });
    const got = [];
    c.on("publication", (ctx) => got.push(ctx.data));
    const subscribed = waitEvent(c, "subscribed", (ctx) => ctx.channel === P.channel);
    c.connect();
    await subscribed;
    if (P.recover) {
      const resubscribed = waitEvent(c, "subscribed", (ctx) => ctx.channel === P.channel);
      await request("away");
      await resubscribed;
      await waitCount(got, P.missed || 2);
    }
    await request("publish");
    await waitCount(got, (P.recover ? P.missed || 2 : 0) + 1);
    await sleep(200);
    c.disconnect();
  },

  /** `name#user1,user2`: token (another user) is refused 103, token2 (listed) subscribes. */
  async user_limited() {
    const a = client("a", { token: P.token });
    const b = client("b", { token: P.token2 });
    const sa = subscription(a, "a", P.channel);
    const sb = subscription(b, "b", P.channel);
    a.connect();
    b.connect();
    const refused = waitEvent(sa, "unsubscribed");
    sa.subscribe();
    await refused;
    const ok = waitEvent(sb, "subscribed");
    sb.subscribe();
    await ok;
    a.disconnect();
    b.disconnect();
  },
};

// -- main --------------------------------------------------------------------------------

const scenario = scenarios[scenarioName];
if (!scenario || !url) {
  emit({ ev: "fail", error: `usage: driver.mjs <${Object.keys(scenarios).join("|")}> <ws-url> [params]` });
  process.exit(2);
}
const watchdog = setTimeout(() => fail(`scenario ${scenarioName} timed out`), TIMEOUT + 2000);
try {
  await scenario();
  clearTimeout(watchdog);
  emit({ ev: "done" });
  process.exit(0);
} catch (e) {
  fail(e);
}
