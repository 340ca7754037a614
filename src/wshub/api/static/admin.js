// wshub admin page: polls /admin/api/stats every second, draws the rate chart, publishes,
// looks up a user's connections and disconnects them. Every POST carries X-Requested-With
// (the server's CSRF check); the session is the HttpOnly cookie set at sign-in.
"use strict";

(() => {
  const POLL_MS = 1000;
  const USER_REFRESH_MS = 2000;
  const HISTORY = 120; // chart samples (seconds)
  const SERIES = [
    { key: "in", color: "#2f6fed" },
    { key: "out", color: "#12a150" },
    { key: "pub", color: "#d98b00" },
  ];

  const $ = (id) => document.getElementById(id);
  const samples = []; // {t, in, out, pub}
  let last = null; // previous stats reply
  let shownUser = null;
  let userTimer = null;
  const prevCommands = new Map(); // client -> {t, commands}

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

  function fmtRate(v) {
    if (v >= 10000) return (v / 1000).toFixed(1) + "k";
    if (v >= 100) return v.toFixed(0);
    return v.toFixed(1);
  }

  function fmtTime(epoch) {
    if (epoch == null) return "–";
    return new Date(epoch * 1000).toLocaleTimeString();
  }

  function fmtAgo(epoch) {
    if (epoch == null) return "never";
    const s = Math.max(0, Date.now() / 1000 - epoch);
    if (s < 60) return s.toFixed(0) + " s ago";
    if (s < 3600) return (s / 60).toFixed(0) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }

  function fmtUptime(s) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
  }

  async function api(path, body) {
    const opts = { credentials: "same-origin", headers: { "X-Requested-With": "wshub-admin" } };
    if (body !== undefined) {
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    if (resp.status === 401) {
      location.href = "/admin";
      throw new Error("signed out");
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.message || `HTTP ${resp.status}`);
    return data;
  }

  // -- stats -----------------------------------------------------------------------------

  function setPollState(ok, text) {
    $("poll-dot").className = "dot " + (ok ? "on" : "off");
    $("poll-state").textContent = text;
  }

  async function poll() {
    try {
      const st = await api("/admin/api/stats");
      render(st);
      setPollState(true, "live");
    } catch (err) {
      setPollState(false, "no data: " + err.message);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function render(st) {
    const c = st.counts;
    $("c-connections").textContent = c.connections;
    $("c-users").textContent = c.users;
    $("c-channels").textContent = c.channels;
    $("node-meta").textContent =
      `${st.node.version} · engine ${st.node.engine} · up ${fmtUptime(st.node.uptime)}` +
      (st.node.draining ? " · draining" : "");

    if (last !== null && st.time > last.time) {
      const dt = st.time - last.time;
      const sample = {
        t: st.time,
        in: Math.max(0, st.totals.messages_in - last.totals.messages_in) / dt,
        out: Math.max(0, st.totals.messages_out - last.totals.messages_out) / dt,
        pub: Math.max(0, st.totals.publications - last.totals.publications) / dt,
      };
      samples.push(sample);
      if (samples.length > HISTORY) samples.shift();
      $("c-rate-in").textContent = fmtRate(sample.in);
      $("c-rate-out").textContent = fmtRate(sample.out);
    }
    last = st;
    drawChart();
    renderConnections(st);
    renderChannels(st);
  }

  function renderConnections(st) {
    const tbody = $("conn-table").querySelector("tbody");
    const rows = st.connections.map((x) =>
      el(
        "tr",
        { "data-id": x.id, "data-user": x.user ?? "" },
        el("td", { class: "mono" }, x.id),
        el("td", {}, userCell(x)),
        el("td", { class: "mono" }, x.client_ip),
        el("td", {}, fmtTime(x.opened_at)),
        el("td", { class: "num" }, x.subscriptions),
        el("td", { class: "num" }, x.messages_in),
        el("td", { class: "num" }, x.messages_out),
      ),
    );
    tbody.replaceChildren(...rows);
    $("conn-empty").hidden = rows.length > 0;
    const more = st.counts.connections > rows.length ? ` (first ${rows.length})` : "";
    $("conn-count").textContent = `${st.counts.connections}${more}`;
  }

  function userCell(x) {
    if (x.user === null) return el("span", { class: "muted" }, x.route);
    if (!x.connected) return el("span", { class: "muted" }, "connecting…");
    if (x.user === "") return el("span", { class: "muted" }, "anonymous");
    const a = el("a", { href: "#", class: "user-link" }, x.user);
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      $("user-name").value = x.user;
      lookUp(x.user);
    });
    return a;
  }

  function renderChannels(st) {
    const tbody = $("chan-table").querySelector("tbody");
    const rows = st.channels.map((x) =>
      el(
        "tr",
        { "data-channel": x.channel },
        el("td", { class: "mono" }, x.channel),
        el("td", { class: "num" }, x.subscribers),
      ),
    );
    tbody.replaceChildren(...rows);
    $("chan-empty").hidden = rows.length > 0;
    $("chan-count").textContent = String(st.counts.channels);
  }

  // -- chart -----------------------------------------------------------------------------

  // A round grid step so that 4 steps cover ``peak`` (at least 0.25/s per step).
  function niceStep(peak) {
    const raw = Math.max(peak / 4, 0.25);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }

  function fmtAxis(v) {
    return v >= 1000 ? fmtRate(v) : String(Number(v.toFixed(2)));
  }

  function drawChart() {
    const canvas = $("rate-chart");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    const left = 48;
    const right = 8;
    const top = 8;
    const bottom = 22;
    const pw = w - left - right;
    const ph = h - top - bottom;
    let peak = 0;
    for (const s of samples) for (const { key } of SERIES) peak = Math.max(peak, s[key]);
    const ymax = 4 * niceStep(peak * 1.1);

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#667085";
    ctx.strokeStyle = "#e3e7ee";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = top + ph - (ph * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(left + pw, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillText(fmtAxis((ymax * i) / 4), left - 6, y);
    }
    ctx.textBaseline = "top";
    for (const secs of [120, 90, 60, 30, 0]) {
      const x = left + pw - (pw * secs) / HISTORY;
      ctx.textAlign = secs === HISTORY ? "left" : secs === 0 ? "right" : "center";
      ctx.fillText(secs ? `-${secs}s` : "now", x, top + ph + 6);
    }

    if (samples.length === 0) return;
    const now = samples[samples.length - 1].t;
    const xOf = (t) => left + pw - (pw * (now - t)) / HISTORY;
    const yOf = (v) => top + ph - (ph * v) / ymax;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top - 2, pw, ph + 4);
    ctx.clip();
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const { key, color } of SERIES) {
      ctx.strokeStyle = color;
      ctx.beginPath();
      samples.forEach((s, i) => {
        const x = xOf(s.t);
        const y = yOf(s[key]);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
      // A light area under the line, and a dot on the latest value.
      ctx.lineTo(xOf(now), top + ph);
      ctx.lineTo(xOf(samples[0].t), top + ph);
      ctx.closePath();
      ctx.globalAlpha = 0.08;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.globalAlpha = 1;
      const latest = samples[samples.length - 1];
      ctx.beginPath();
      ctx.arc(xOf(latest.t) - 3, yOf(latest[key]), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.restore();
  }

  window.addEventListener("resize", drawChart);

  // -- publish ---------------------------------------------------------------------------

  $("publish-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("pub-result");
    const channel = $("pub-channel").value.trim();
    let data;
    try {
      data = JSON.parse($("pub-data").value);
    } catch (err) {
      out.className = "result error";
      out.textContent = "Data is not valid JSON: " + err.message;
      return;
    }
    try {
      const res = await api("/admin/api/publish", { channel, data });
      out.className = "result ok";
      out.textContent = res.epoch ? `Published (offset ${res.offset})` : "Published";
    } catch (err) {
      out.className = "result error";
      out.textContent = err.message;
    }
  });

  // -- user look-up ----------------------------------------------------------------------

  $("user-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    lookUp($("user-name").value.trim());
  });

  async function lookUp(user) {
    shownUser = user;
    clearTimeout(userTimer);
    await refreshUser();
  }

  async function refreshUser() {
    const user = shownUser;
    if (user === null) return;
    const box = $("user-result");
    try {
      const res = await api("/admin/api/user?user=" + encodeURIComponent(user));
      if (user !== shownUser) return;
      renderUser(res);
    } catch (err) {
      box.replaceChildren(el("p", { class: "error" }, err.message));
    }
    clearTimeout(userTimer);
    userTimer = setTimeout(refreshUser, USER_REFRESH_MS);
  }

  function recentRate(s) {
    const now = Date.now() / 1000;
    const prev = prevCommands.get(s.client);
    prevCommands.set(s.client, { t: now, commands: s.commands });
    if (prev && now - prev.t > 0.5 && now - prev.t < 10) {
      return (s.commands - prev.commands) / (now - prev.t);
    }
    return null;
  }

  function renderUser(res) {
    const box = $("user-result");
    if (res.connections.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, `No connections of user "${res.user}".`));
      return;
    }
    const items = res.connections.map((s) => {
      const recent = recentRate(s);
      const rate =
        (recent === null ? "–" : recent.toFixed(2)) +
        ` recent · ${s.commands_per_second.toFixed(2)} average (${s.commands} commands)`;
      const subs = s.subscriptions.length
        ? s.subscriptions.map((c) => el("span", { class: "tag" }, c))
        : [el("span", { class: "muted" }, "none")];
      const btn = el("button", { class: "danger", type: "button" }, "Disconnect");
      btn.addEventListener("click", () => disconnect(res.user, s.client, btn));
      const row = (k, ...v) => [el("dt", {}, k), el("dd", {}, ...v)];
      return el(
        "div",
        { class: "session", "data-client": s.client },
        el(
          "dl",
          {},
          ...row("Client", el("span", { class: "mono" }, s.client)),
          ...row("Client IP", el("span", { class: "mono" }, s.client_ip || "–")),
          ...row("SDK", s.name ? `${s.name} ${s.version}` : "–"),
          ...row("Connected since", `${fmtTime(s.connected_at)} (${fmtAgo(s.connected_at)})`),
          ...row("Last activity", fmtAgo(s.last_activity)),
          ...row("Commands / s", rate),
          ...row("Token expires", s.expires_at ? `${fmtTime(s.expires_at)}` : "never"),
          ...row("Traffic", `${s.messages_in} in · ${s.messages_out} out`),
          ...row("Subscriptions", ...subs),
        ),
        el("div", { class: "actions" }, btn),
      );
    });
    box.replaceChildren(
      el("p", { class: "muted" }, `${res.connections.length} connection(s) of "${res.user}"`),
      ...items,
    );
  }

  async function disconnect(user, client, btn) {
    btn.disabled = true;
    try {
      const res = await api("/admin/api/disconnect", { user, client });
      btn.textContent = res.disconnected ? "Disconnected" : "Already gone";
      setTimeout(refreshUser, 300);
    } catch (err) {
      btn.disabled = false;
      btn.textContent = "Disconnect (failed: " + err.message + ")";
    }
  }

  // -- sign out --------------------------------------------------------------------------

  $("logout").addEventListener("click", async () => {
    try {
      await api("/admin/logout", {});
    } finally {
      location.href = "/admin";
    }
  });

  poll();
})();
