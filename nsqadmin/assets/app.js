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

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.action");
    if (!button) return;
    ev.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    busy = true;
    button.disabled = true;
    try {
      await call(button.dataset.method || "POST", button.dataset.url, button.dataset.body);
      flash("ok", button.textContent.trim() + ": done");
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

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.peek");
    if (!button) return;
    const out = document.getElementById("peek");
    button.disabled = true;
    out.textContent = "waiting up to 3 s for messages…";
    try {
      const answer = await call("GET", "/api/peek/" + encodeURIComponent(button.dataset.topic) + "?count=10&timeout=3s");
      out.textContent = "";
      const list = document.createElement("ol");
      list.className = "peeked";
      for (const m of answer.messages) {
        const li = document.createElement("li");
        const meta = document.createElement("small");
        meta.textContent = m.id + " · " + m.node + " · attempts " + m.attempts + " · " + m.size + " B";
        const pre = document.createElement("pre");
        pre.textContent = m.body;
        li.append(meta, pre);
        list.appendChild(li);
      }
      if (!answer.messages.length) out.textContent = "no message arrived within 3 s";
      else out.appendChild(list);
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
