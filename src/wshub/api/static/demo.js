// wshub demo chat on the real centrifuge SDK (served at /demo/centrifuge.js from npm).
//
// Rooms are channels chat:<room> (presence, join/leave, history, recovery). On joining a room
// the page loads its recent history; after a reconnect the SDK resubscribes with the last
// position it saw and the server sends what was missed ("recovered"). Messages are rendered
// as they arrive, without de-duplication, so what the page shows is what the server sent.
"use strict";

(() => {
  const NAMESPACE = "chat:";
  const ROOMS = ["lobby", "random", "dev"];
  const HISTORY_LIMIT = 50;
  const ROOM_RE = /^[\w-]{1,64}$/u;

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const wsUrl = `${scheme}://${location.hostname}:${body.dataset.wsPort}${body.dataset.wsPath}`;

  let centrifuge = null;
  let me = null; // user name
  let clientId = null;
  let sub = null;
  let room = null;
  const presence = new Map(); // client id -> user
  const status = { connection: "disconnected", subscription: "", subscribed: [] };

  // -- helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  function scrollDown() {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }

  function sys(text, cls) {
    $("messages").append(el("li", { class: "sys" + (cls ? " " + cls : "") }, text));
    scrollDown();
  }

  function messageItem(pub, extraClass) {
    const data = pub.data || {};
    const author = pub.info ? pub.info.user : "server";
    const text = typeof data.text === "string" ? data.text : JSON.stringify(data);
    const when = typeof data.ts === "number" ? new Date(data.ts) : null;
    const cls = ["msg", author === me ? "mine" : "", extraClass || ""].join(" ").trim();
    return el(
      "li",
      { class: cls, "data-offset": String(pub.offset ?? ""), "data-author": author },
      el("span", { class: "author" }, author),
      el("span", { class: "text" }, text),
      when ? el("time", {}, when.toLocaleTimeString()) : "",
    );
  }

  async function fetchToken(user) {
    const resp = await fetch("/demo/token?user=" + encodeURIComponent(user));
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.message || `token request failed (HTTP ${resp.status})`);
    return data.token;
  }

  // -- connection ------------------------------------------------------------------------

  function setConnState(state, detail) {
    status.connection = state;
    const dot = { connected: "on", connecting: "wait" }[state] || "off";
    $("conn-dot").className = "dot " + dot;
    $("conn-state").textContent = detail ? `${state} (${detail})` : state;
  }

  async function start(user, firstRoom) {
    const token = await fetchToken(user);
    me = user;
    centrifuge = new Centrifuge(wsUrl, {
      token,
      getToken: () => fetchToken(user),
      name: "wshub-demo",
      minReconnectDelay: 300,
      maxReconnectDelay: 3000,
    });
    centrifuge.on("connecting", (ctx) => setConnState("connecting", ctx.reason));
    centrifuge.on("connected", (ctx) => {
      clientId = ctx.client;
      setConnState("connected");
    });
    centrifuge.on("disconnected", (ctx) => setConnState("disconnected", ctx.reason));
    centrifuge.on("error", (ctx) => console.warn("centrifuge error", ctx.error));
    centrifuge.connect();

    $("join").hidden = true;
    $("chat").hidden = false;
    $("me").hidden = false;
    $("me").textContent = "signed in as " + user;
    renderRooms();
    enterRoom(firstRoom);
  }

  // -- rooms -----------------------------------------------------------------------------

  function renderRooms() {
    const names = ROOMS.includes(room) || room === null ? ROOMS : [...ROOMS, room];
    $("rooms").replaceChildren(
      ...names.map((name) => {
        const a = el("a", { href: "#" + name, class: name === room ? "active" : "" }, "#" + name);
        a.addEventListener("click", (ev) => {
          ev.preventDefault();
          enterRoom(name);
        });
        return el("li", {}, a);
      }),
    );
  }

  function enterRoom(name) {
    if (name === room) return;
    if (sub !== null) {
      sub.removeAllListeners();
      sub.unsubscribe();
      centrifuge.removeSubscription(sub);
    }
    room = name;
    presence.clear();
    renderPresence();
    status.subscribed = [];
    $("messages").replaceChildren();
    $("room-title").textContent = "#" + name;
    $("room-channel").textContent = NAMESPACE + name;
    history.replaceState(null, "", "#" + name);
    renderRooms();

    const s = centrifuge.newSubscription(NAMESPACE + name, { joinLeave: true });
    sub = s;
    s.on("subscribing", (ctx) => setSubState("subscribing", ctx.reason));
    s.on("subscribed", (ctx) => onSubscribed(s, ctx));
    s.on("unsubscribed", (ctx) => setSubState("unsubscribed", ctx.reason));
    s.on("error", (ctx) => console.warn("subscription error", ctx.error));
    s.on("publication", (ctx) => {
      $("messages").append(messageItem(ctx));
      scrollDown();
    });
    s.on("join", (ctx) => {
      presence.set(ctx.info.client, ctx.info.user);
      renderPresence();
      if (ctx.info.client !== clientId) sys(`${ctx.info.user} joined`);
    });
    s.on("leave", (ctx) => {
      presence.delete(ctx.info.client);
      renderPresence();
      if (ctx.info.client !== clientId) sys(`${ctx.info.user} left`);
    });
    s.subscribe();
  }

  function setSubState(state, detail) {
    status.subscription = state;
    $("sub-state").textContent = detail ? `${state}: ${detail}` : state;
  }

  async function onSubscribed(s, ctx) {
    status.subscribed.push({ wasRecovering: ctx.wasRecovering, recovered: ctx.recovered });
    setSubState(ctx.wasRecovering && ctx.recovered ? "subscribed (recovered)" : "subscribed");
    if (!ctx.wasRecovering) {
      sys(`You joined #${room} as ${me}`);
      await loadHistory(s, ctx);
    } else if (ctx.recovered) {
      sys("Back online: missed messages recovered");
    } else {
      sys("Back online, but the missed messages could not be recovered: reloading", "warn");
      $("messages").replaceChildren();
      await loadHistory(s, ctx);
    }
    await refreshPresence(s);
  }

  async function loadHistory(s, ctx) {
    let res;
    try {
      res = await s.history({ limit: HISTORY_LIMIT, reverse: true });
    } catch (err) {
      sys("History not available: " + (err.message || err.code), "warn");
      return;
    }
    if (s !== sub) return;
    // Only what was published before the subscription: later ones arrive as publications.
    const top = ctx.streamPosition ? ctx.streamPosition.offset : Infinity;
    const pubs = (res.publications || []).filter((p) => p.offset <= top).reverse();
    if (pubs.length === 0) return;
    const list = $("messages");
    const first = list.firstChild;
    list.insertBefore(el("li", { class: "divider" }, "earlier messages"), first);
    for (const p of pubs) list.insertBefore(messageItem(p, "history"), first);
    list.insertBefore(el("li", { class: "divider" }, "now"), first);
    scrollDown();
  }

  async function refreshPresence(s) {
    try {
      const res = await s.presence();
      if (s !== sub) return;
      presence.clear();
      for (const [client, info] of Object.entries(res.clients || {})) presence.set(client, info.user);
      renderPresence();
    } catch (err) {
      console.warn("presence failed", err);
    }
  }

  function renderPresence() {
    const users = new Map(); // user -> connections
    for (const user of presence.values()) users.set(user, (users.get(user) || 0) + 1);
    const names = [...users.keys()].sort((a, b) => a.localeCompare(b));
    $("presence").replaceChildren(
      ...names.map((u) =>
        el(
          "li",
          { class: u === me ? "me" : "", "data-user": u },
          el("span", { class: "dot on" }),
          u,
          users.get(u) > 1 ? el("span", { class: "n" }, `×${users.get(u)}`) : "",
        ),
      ),
    );
    $("presence-count").textContent = names.length ? String(names.length) : "";
  }

  // -- forms -----------------------------------------------------------------------------

  $("join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = $("join-user").value.trim();
    const name = $("join-room").value.trim();
    if (!ROOM_RE.test(name)) {
      $("join-error").textContent = "Room: letters, digits, '-' or '_' (up to 64).";
      return;
    }
    try {
      await start(user, name);
    } catch (err) {
      $("join-error").textContent = err.message;
    }
  });

  $("room-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("room-name").value.trim();
    if (!ROOM_RE.test(name)) return;
    $("room-name").value = "";
    enterRoom(name);
  });

  $("compose").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("compose-text");
    const text = input.value.trim();
    if (!text || sub === null) return;
    try {
      await sub.publish({ text, ts: Date.now() });
      input.value = "";
    } catch (err) {
      sys("Not sent: " + (err.message || err.code), "warn");
    }
  });

  // Pre-fill from the address: /demo?user=alice#lobby
  const params = new URLSearchParams(location.search);
  if (params.get("user")) $("join-user").value = params.get("user");
  if (location.hash.length > 1) $("join-room").value = decodeURIComponent(location.hash.slice(1));

  // For tests and the curious: the SDK objects and what the page saw.
  window.wshubDemo = {
    get centrifuge() {
      return centrifuge;
    },
    get subscription() {
      return sub;
    },
    get clientId() {
      return clientId;
    },
    status,
  };
})();
