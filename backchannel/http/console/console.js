// The console (/console): watch a channel live, post, claim, ack and release.
// Same origin only, no inline code, no external assets (CSP script-src 'self').
// The key lives in sessionStorage and travels only in the X-API-Key header:
// EventSource cannot send a header, so the stream is read with fetch() and a
// ReadableStream reader, its server-sent events parsed here, and a broken
// stream resumes with Last-Event-ID.
"use strict";

(function () {
  var KEY = "backchannel.console.key";
  var RECENT = "backchannel.console.recent";
  var METRICS_MS = 3000;
  var CHANNELS_MS = 20000;
  var TICK_MS = 250;
  var SHOWN = 200; // messages kept on the page

  var state = {
    key: null, // the API key
    keyId: null,
    channel: null, // {id, name, mode}
    messages: new Map(), // id -> message JSON, as the stream last told it
    leases: new Map(), // id -> lease expiry (ms), for leases taken from this page
    follow: null, // AbortController of the current stream
    timers: []
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // -- errors: the standard envelope, shown as it came -------------------------

  function ApiError(status, body) {
    this.status = status;
    this.body = body || {};
  }

  function showBox(title, text, documentation) {
    $("error-title").textContent = title;
    $("error-text").textContent = text;
    var doc = $("error-doc");
    doc.hidden = !documentation;
    if (documentation) { doc.href = documentation; }
    $("error").hidden = false;
  }

  function showError(err) {
    var body = err instanceof ApiError ? err.body : {};
    var title = err instanceof ApiError
      ? err.status + " " + (body.error || "error") : "Network error";
    var text = body.message || (err && err.message) || String(err);
    if (body.retry_after) { text += " (retry after " + body.retry_after + " s)"; }
    if (body.request_id) { text += " — request " + body.request_id; }
    showBox(title, text, body.documentation_url);
  }

  function clearError() { $("error").hidden = true; }

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (state.key) { headers["X-API-Key"] = state.key; }
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
        if (!response.ok) { throw new ApiError(response.status, data); }
        return data;
      });
    });
  }

  function act(promise) {
    return promise.then(function (value) { clearError(); return value; }, function (err) {
      showError(err);
      throw err;
    });
  }

  function quietly(promise) { promise.catch(function () { /* shown already */ }); }

  // -- the key ---------------------------------------------------------------

  function useKey(key) {
    state.key = key;
    return act(api("GET", "/v1/keys/me")).then(function (me) {
      sessionStorage.setItem(KEY, key);
      state.keyId = me.key_id;
      $("who").textContent = "key " + me.key_id;
      $("who").hidden = $("forget").hidden = false;
      $("login").hidden = true;
      $("app").hidden = false;
      loadChannels();
      every(CHANNELS_MS, loadChannels);
    }, function (err) {
      state.key = null;
      sessionStorage.removeItem(KEY);
      throw err;
    });
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(RECENT);
    window.location.reload();
  }

  function mint() {
    quietly(act(api("POST", "/v1/keys", { agent_label: "console" })).then(function (minted) {
      return useKey(minted.key);
    }));
  }

  function every(ms, fn) { state.timers.push(window.setInterval(fn, ms)); }

  // -- channels --------------------------------------------------------------

  function recent() {
    try { return JSON.parse(sessionStorage.getItem(RECENT) || "[]"); } catch (e) { return []; }
  }

  function remember(channel) {
    var list = recent().filter(function (c) { return c.id !== channel.id; });
    list.unshift({ id: channel.id, name: channel.name, mode: channel.mode });
    sessionStorage.setItem(RECENT, JSON.stringify(list.slice(0, 20)));
  }

  function channelButton(channel) {
    var item = el("li");
    var button = el("button", "", undefined);
    button.type = "button";
    button.dataset.channel = channel.id;
    button.append(el("span", "", channel.name), el("span", "quiet", channel.mode));
    if (state.channel && state.channel.id === channel.id) {
      button.setAttribute("aria-current", "true");
    }
    button.addEventListener("click", function () { openChannel(channel.id); });
    item.append(button);
    return item;
  }

  function loadChannels() {
    quietly(act(api("GET", "/v1/channels?limit=100")).then(function (page) {
      var mine = [], others = [], seen = {};
      recent().concat(page.data.filter(function (c) { return c.is_member; }))
        .forEach(function (c) { if (!seen[c.id]) { seen[c.id] = true; mine.push(c); } });
      page.data.forEach(function (c) { if (!seen[c.id]) { others.push(c); } });
      $("mine").replaceChildren.apply($("mine"), mine.map(channelButton));
      $("others").replaceChildren.apply($("others"), others.map(channelButton));
    }));
  }

  function openChannel(identifier) {
    var path = "/v1/channels/" + encodeURIComponent(identifier);
    return act(api("GET", path)).then(function (channel) {
      stopFollowing();
      state.channel = channel;
      state.messages = new Map();
      state.leases = new Map();
      remember(channel);
      $("channel-name").textContent = channel.name;
      $("channel-mode").textContent = channel.mode + (channel.access === "open" ? "" : " · " + channel.access);
      $("messages").replaceChildren();
      $("channel").hidden = false;
      $("channel").dataset.mode = channel.mode;
      $("claim-next").disabled = channel.mode !== "claimable";
      $("empty").hidden = false;
      loadChannels();
      follow(channel.id);
      pollMetrics();
    });
  }

  // -- the stream: fetch + ReadableStream, SSE parsed here ------------------------

  function setStreamState(word) {
    var badge = $("stream-state");
    badge.dataset.state = word;
    badge.textContent = word;
  }

  function stopFollowing() {
    if (state.follow) { state.follow.abort(); state.follow = null; }
  }

  // Calls onEvent({id, event, data}) for each event; resolves when the body ends.
  function readEvents(body, onEvent, onComment) {
    var reader = body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function dispatch(block) {
      var event = { id: null, event: "message", data: [] };
      block.split("\n").forEach(function (line) {
        if (line === "") { return; }
        if (line.charAt(0) === ":") { onComment(line.slice(1).trim()); return; }
        var colon = line.indexOf(":");
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") { event.id = value; }
        else if (field === "event") { event.event = value; }
        else if (field === "data") { event.data.push(value); }
      });
      if (event.data.length) {
        event.data = JSON.parse(event.data.join("\n"));
        onEvent(event);
      }
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { return; }
        buffer += decoder.decode(chunk.value, { stream: true });
        // CRLF or CR line ends become LF; a CR at the very end waits for its LF
        var cut = buffer.charAt(buffer.length - 1) === "\r" ? buffer.length - 1 : buffer.length;
        buffer = buffer.slice(0, cut).replace(/\r\n?/g, "\n") + buffer.slice(cut);
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function follow(channelId) {
    var control = new AbortController();
    state.follow = control;
    var lastId = null; // the cursor of the last message seen: resume after it
    var ended = false;
    var received = 0;
    var badge = $("stream-state");
    delete badge.dataset.resumedFrom;
    badge.title = "";
    badge.dataset.received = "0";
    setStreamState("connecting");

    function connect() {
      if (control.signal.aborted || ended) { return; }
      var headers = { "X-API-Key": state.key, "Accept": "text/event-stream" };
      if (lastId) {
        headers["Last-Event-ID"] = lastId;
        badge.dataset.resumedFrom = lastId; // shown in the badge's tooltip
        badge.title = "resumed after " + lastId;
      }
      var path = "/v1/channels/" + encodeURIComponent(channelId) + "/stream";
      fetch(path, { headers: headers, signal: control.signal, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) {
            return response.json().then(function (body) {
              throw new ApiError(response.status, body);
            });
          }
          setStreamState("live");
          return readEvents(response.body, function (event) {
            if (event.id) { lastId = event.id; }
            if (event.event === "message") { badge.dataset.received = String(++received); }
            if (event.event === "closed") {
              var reason = event.data.reason;
              if (reason === "access" || reason === "revoked") {
                ended = true;
                showError(new ApiError(reason === "revoked" ? 401 : 403, {
                  error: reason === "revoked" ? "unauthorized" : "channel_access_denied",
                  message: "The stream ended: " + (reason === "revoked"
                    ? "this key was revoked." : "this key lost access to the channel.")
                }));
              }
              return;
            }
            if (event.event !== "overflow") { onStreamEvent(event.event, event.data); }
          }, function () { /* a keep-alive comment */ });
        })
        .then(function () { retry(); }, function (err) {
          if (control.signal.aborted) { return; }
          if (err instanceof ApiError && err.status < 500 && err.status !== 429) {
            ended = true;
            showError(err);
          }
          retry();
        });
    }

    function retry() {
      if (control.signal.aborted) { return; }
      if (ended) { setStreamState("ended"); return; }
      setStreamState("reconnecting");
      window.setTimeout(connect, 1000);
    }

    connect();
  }

  function onStreamEvent(kind, message) {
    if (!state.channel || message.channel_id !== state.channel.id) { return; }
    message.event = kind;
    if (kind === "released" || kind === "expired") { state.leases.delete(message.id); }
    state.messages.set(message.id, message);
    render(message.id);
  }

  // -- rendering -------------------------------------------------------------

  function messageState(message) {
    if (message.event === "retracted" || !message.active) { return "gone"; }
    if (message.acknowledged_by.length) { return "acked"; }
    if (message.claimed_by || message.claimed_at) { return "claimed"; }
    return "open";
  }

  function clock(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function stateText(message, now) {
    var word = messageState(message);
    if (word === "gone") { return message.event === "retracted" ? "retracted" : "expired"; }
    if (word === "acked") {
      var names = message.acknowledged_by.map(function (a) { return a.name; }).filter(Boolean);
      return names.length ? "acked by " + names.join(", ") : "acked";
    }
    if (word === "claimed") {
      var who = message.claimed_by ? message.claimed_by.name : "key " + message.claimed_by_key_id;
      if (message.claimed_by_key_id === state.keyId) { who = "you"; }
      var lease = state.leases.get(message.id);
      if (lease) { return "claimed by " + who + " · lease " + clock((lease - now) / 1000); }
      return "claimed by " + who + " · " + clock((now - Date.parse(message.claimed_at)) / 1000);
    }
    return "unclaimed";
  }

  function button(label, action, message) {
    var node = el("button", "secondary", label);
    node.type = "button";
    node.dataset.action = action;
    node.addEventListener("click", function () { run(action, message.id); });
    return node;
  }

  function messageItem(message, now) {
    var word = messageState(message);
    var item = el("li");
    item.dataset.id = message.id;
    item.dataset.state = word;
    item.append(el("p", "content", message.content));
    var meta = el("div", "meta");
    var status = el("span", "state", stateText(message, now));
    status.dataset.role = "state";
    meta.append(status, el("span", "", message.actor_label || (message.actor && message.actor.name) || ""),
      el("span", "", new Date(message.created_at).toLocaleTimeString()));
    var buttons = el("span", "row");
    var mine = message.claimed_by_key_id === state.keyId;
    if (state.channel.mode === "claimable") {
      if (word === "open") { buttons.append(button("Claim", "claim", message)); }
      if (word === "claimed" && mine) {
        buttons.append(button("Ack", "ack", message), button("Release", "release", message));
      }
    } else if (word === "open") {
      buttons.append(button("Ack", "ack", message));
    }
    meta.append(buttons);
    item.append(meta);
    return item;
  }

  // One message's item, replaced in place (or added on top): the rest of the
  // list is left alone, so a button under the pointer is not swapped out.
  function render(messageId) {
    var list = $("messages");
    var old = null;
    Array.prototype.forEach.call(list.children, function (node) {
      if (node.dataset.id === messageId) { old = node; }
    });
    var item = messageItem(state.messages.get(messageId), Date.now());
    if (old) {
      old.replaceWith(item);
    } else {
      item.classList.add("fresh");
      list.prepend(item);
      while (list.children.length > SHOWN) { list.lastChild.remove(); }
    }
    $("empty").hidden = list.children.length > 0;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("#messages li[data-state=claimed]").forEach(function (item) {
      var message = state.messages.get(item.dataset.id);
      if (message) { item.querySelector("[data-role=state]").textContent = stateText(message, now); }
    });
  }

  // -- metrics: polled; throughput counted from server timestamps ---------------------

  function pollMetrics() {
    if (!state.channel) { return; }
    var id = state.channel.id;
    quietly(act(api("GET", "/v1/channels/" + encodeURIComponent(id) + "/metrics")).then(function (m) {
      if (!state.channel || state.channel.id !== id) { return; }
      var since = Date.parse(m.computed_at) - 60000;
      var posts = 0, acks = 0;
      state.messages.forEach(function (message) {
        if (Date.parse(message.created_at) > since) { posts += 1; }
        message.acknowledged_by.forEach(function (a) {
          if (Date.parse(a.occurred_at) > since) { acks += 1; }
        });
      });
      var figures = {
        waiters: m.waiters, unclaimed: m.unclaimed, claimed: m.claimed, leased: m.leased,
        acknowledged: m.message_counts.acknowledged, posts_per_minute: posts,
        acks_per_minute: acks,
        avg_claim_to_ack_ms: m.avg_claim_to_ack_ms === null ? "–" : m.avg_claim_to_ack_ms + " ms"
      };
      document.querySelectorAll("#metrics [data-metric]").forEach(function (node) {
        node.textContent = String(figures[node.dataset.metric]);
      });
    }));
  }

  // -- actions ---------------------------------------------------------------

  function leaseSeconds() {
    var value = parseInt($("lease").value, 10);
    return isNaN(value) ? 0 : value;
  }

  function claimed(answer) {
    if (answer.claimed === null) { return; } // claim-next found nothing
    var message = answer.message || answer.claimed;
    if (answer.expires_at) { state.leases.set(message.id, Date.parse(answer.expires_at)); }
    onStreamEvent("claimed", message);
  }

  function run(action, messageId) {
    var path = "/v1/messages/" + encodeURIComponent(messageId) + "/";
    var lease = leaseSeconds();
    var done;
    if (action === "claim" && lease > 0) {
      done = api("POST", path + "claim-with-lease", { lease_seconds: lease }).then(claimed);
    } else if (action === "claim") {
      done = api("POST", path + "claim", {}).then(claimed);
    } else {
      done = api("POST", path + action, {}).then(function (answer) {
        state.leases.delete(messageId);
        onStreamEvent(action === "ack" ? "acked" : "released", answer.message);
      });
    }
    quietly(act(done).then(pollMetrics));
  }

  function claimNext() {
    var lease = leaseSeconds();
    var body = lease > 0 ? { lease_seconds: lease } : {};
    var path = "/v1/channels/" + encodeURIComponent(state.channel.id) + "/claim-next";
    quietly(act(api("POST", path, body)).then(function (answer) {
      if (answer.claimed === null) {
        showBox("Nothing to claim", "Every message is claimed already.", null);
        return;
      }
      claimed({ message: answer.claimed, expires_at: answer.expires_at });
      pollMetrics();
    }));
  }

  function onSubmit(id, fn) {
    $(id).addEventListener("submit", function (event) {
      event.preventDefault(); // never a navigation: the key must not reach a URL
      fn();
    });
  }

  function start() {
    onSubmit("key-form", function () {
      var key = $("key").value.trim();
      $("key").value = "";
      quietly(useKey(key));
    });
    onSubmit("open-form", function () {
      quietly(openChannel($("open-name").value.trim()));
    });
    onSubmit("create-form", function () {
      var body = { name: $("create-name").value.trim(), mode: $("create-mode").value };
      quietly(act(api("POST", "/v1/channels", body)).then(function (channel) {
        $("create-name").value = "";
        return openChannel(channel.id);
      }));
    });
    onSubmit("post-form", function () {
      var content = $("post-content").value;
      var path = "/v1/channels/" + encodeURIComponent(state.channel.id) + "/messages";
      quietly(act(api("POST", path, { content: content })).then(function () {
        $("post-content").value = "";
        pollMetrics();
      }));
    });
    $("claim-next").addEventListener("click", claimNext);
    $("mint").addEventListener("click", mint);
    $("forget").addEventListener("click", forgetKey);
    $("error-close").addEventListener("click", clearError);
    window.setInterval(tick, TICK_MS);
    window.setInterval(pollMetrics, METRICS_MS);
    var saved = sessionStorage.getItem(KEY);
    if (saved) {
      useKey(saved).catch(function () { $("login").hidden = false; });
    } else {
      $("login").hidden = false;
    }
  }

  start();
})();
