// nsqadmin's only script: live refresh of the page, the action buttons
// (with confirmation), the create form, peek and the counter.
(function () {
  "use strict";
  const body = document.body;
  const base = body.dataset.base || "";
  const every = Math.max(1000, parseInt(body.dataset.refresh || "5000", 10));
  let busy = false;

  function flash(kind, text) {
    const box = document.getElementById("flash");
    if (!box) return;
    const div = document.createElement("div");
    div.className = kind;
    div.textContent = text;
    box.appendChild(div);
    setTimeout(() => div.remove(), 8000);
  }

  async function refresh() {
    const main = document.getElementById("content");
    if (!main) return;
    try {
      const r = await fetch(location.href, { headers: { "X-Refresh": "1" } });
      const html = await r.text();
      const doc = new DOMParser().parseFromString(html, "text/html");
      const fresh = doc.getElementById("content");
      if (fresh && !busy) {
        const peek = document.getElementById("peek");
        main.replaceWith(fresh);
        // Peeked messages stay until the next peek.
        const slot = document.getElementById("peek");
        if (peek && slot) slot.replaceWith(peek);
      }
    } catch (e) {
      // The next tick tries again.
    }
  }

  async function call(method, url, payload) {
    const init = { method: method, headers: { "Content-Type": "application/json" } };
    if (payload) init.body = payload;
    const r = await fetch(base + url, init);
    let answer = {};
    try { answer = await r.json(); } catch (e) { /* empty body */ }
    if (!r.ok) throw new Error(answer.message || r.status + " " + r.statusText);
    if (answer.message) flash("warning", answer.message);
    return answer;
  }

  // What an action's answer says it did, for the flash.
  function done(answer) {
    if (answer.requeued !== undefined) return answer.requeued + " requeued";
    if (answer.promoted !== undefined) {
      const messages = answer.promoted.reduce((n, p) => n + p.messages, 0);
      return messages.toLocaleString("en-US") + " messages taken over";
    }
    if (answer.retired !== undefined) {
      return answer.retired.messages.toLocaleString("en-US") + " messages passed";
    }
    return "done";
  }

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.action");
    if (!button) return;
    ev.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    busy = true;
    button.disabled = true;
    try {
      const answer = await call(button.dataset.method || "POST", button.dataset.url, button.dataset.body);
      flash("ok", button.textContent.trim() + ": " + done(answer));
      if (button.dataset.after) {
        location.href = base + button.dataset.after;
        return;
      }
    } catch (e) {
      flash("error", button.textContent.trim() + " failed: " + e.message);
    } finally {
      busy = false;
      button.disabled = false;
    }
    refresh();
  });

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.create");
    if (!form) return;
    ev.preventDefault();
    const topic = form.elements.topic.value.trim();
    const channel = form.elements.channel.value.trim();
    try {
      await call("POST", form.dataset.url, JSON.stringify({ topic: topic, channel: channel }));
      flash("ok", "created " + topic + (channel ? "/" + channel : ""));
      form.reset();
      refresh();
    } catch (e) {
      flash("error", "create failed: " + e.message);
    }
  });

  // Age of a Unix-nanosecond timestamp as the pages write it: 5s, 1m05s, 2h01m.
  function age(ns) {
    const secs = Math.max(0, Math.floor((Date.now() * 1e6 - ns) / 1e9));
    const h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (h > 0) return h + "h" + two(m) + "m";
    if (m > 0) return m + "m" + two(s) + "s";
    return s + "s";
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  // The same columns as the dead-letter table the server draws.
  function messageTable(messages) {
    const table = document.createElement("table");
    table.className = "stats messages";
    table.id = "peeked";
    const head = table.createTHead().insertRow();
    for (const [title, n] of [["Node"], ["ID"], ["Attempts", 1], ["Age", 1], ["Body"]]) {
      const th = document.createElement("th");
      if (n) th.className = "n";
      th.textContent = title;
      head.appendChild(th);
    }
    const rows = table.createTBody();
    for (const m of messages) {
      const tr = rows.insertRow();
      tr.dataset.id = m.id;
      const id = cell("");
      const code = document.createElement("code");
      code.textContent = m.id;
      id.appendChild(code);
      const body = cell("", "body");
      if (m.text === null) {
        const badge = document.createElement("span");
        badge.className = "badge binary";
        badge.textContent = "binary, " + m.size.toLocaleString("en-US") + " bytes";
        body.appendChild(badge);
      } else {
        const pre = document.createElement("pre");
        pre.textContent = m.text.length > 500 ? m.text.slice(0, 500) + "…" : m.text;
        body.appendChild(pre);
      }
      tr.append(cell(m.node), id, cell(m.attempts, "n attempts"), cell(age(m.timestamp), "n"), body);
    }
    return table;
  }

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.peek");
    if (!button) return;
    const out = document.getElementById("peek");
    button.disabled = true;
    out.textContent = "reading…";
    try {
      const url = "/api/peek/" + encodeURIComponent(button.dataset.topic) + "/" +
        encodeURIComponent(button.dataset.channel) + "?count=10";
      const answer = await call("GET", url);
      out.textContent = "";
      const note = document.createElement("p");
      note.className = "empty";
      if (!answer.messages.length) {
        note.textContent = "nothing queued";
        out.appendChild(note);
      } else {
        note.textContent = "The next " + answer.messages.length + " of " +
          answer.total.toLocaleString("en-US") + " queued, left in the channel:";
        out.append(note, messageTable(answer.messages));
      }
    } catch (e) {
      out.textContent = "peek failed: " + e.message;
    } finally {
      button.disabled = false;
    }
  });

  async function count() {
    const el = document.getElementById("counter");
    if (!el) return;
    try {
      const r = await fetch(base + el.dataset.url);
      const answer = await r.json();
      let total = 0;
      for (const key in answer.stats) total += answer.stats[key].message_count;
      const now = Date.now();
      const prev = el.dataset.total ? Number(el.dataset.total) : null;
      const then = el.dataset.at ? Number(el.dataset.at) : null;
      el.dataset.total = total;
      el.dataset.at = now;
      el.textContent = total.toLocaleString("en-US");
      if (prev !== null && now > then) {
        const rate = ((total - prev) * 1000) / (now - then);
        document.getElementById("counter-rate").textContent = rate.toFixed(1) + " msg/s";
      }
    } catch (e) {
      // try again next second
    }
  }

  const live = document.getElementById("autorefresh");
  if (document.getElementById("counter")) {
    count();
    setInterval(count, 1000);
  } else {
    setInterval(() => {
      if (live && live.checked && !busy && !document.hidden) refresh();
    }, every);
  }
})();
