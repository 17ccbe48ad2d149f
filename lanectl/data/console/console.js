// The booth console: login, one card per lane fed by SSE (/console/events), release / cash release dialogs.
// No build step, no library: served as is by lanectl (lanectl/adapters/console/server.py).
"use strict";

const TEXT = {
  zh: {
    title: "岗亭控制台", offline: "连接中断，正在重连…", logout: "退出", login: "操作员登录", user: "用户名",
    password: "密码", login_button: "登录", plate: "车牌", class: "类别", entered: "入场", stay: "停留", due: "应收",
    payment: "支付", board: "显示屏", release_cash: "收现放行", release: "放行", release_title: "放行",
    amount: "收取现金（元）", reason: "原因", confirm: "确认放行", cancel: "取消",
    entry: "入口", exit: "出口", bad_credentials: "用户名或密码错误", locked_out: "登录失败次数过多，请 {s} 秒后再试",
    need_reason: "请填写原因", bad_amount: "金额格式不对（例如 12 或 12.50）", released: "已放行",
    already_opening: "道闸已在抬起（可能另一位操作员刚放行），未重复操作", refused: "未放行：{m}",
    not_handled: "未放行：{m}", not_delivered: "已决定放行，但道闸未确认：{m}", error: "失败：{m}",
    settling: "平台支付进行中", due_unknown: "未知（无入场记录）", no_plate: "无牌车", waiting_pay: "待支付", none: "—", minutes: "{h} 小时 {m} 分", short: "少收 {y} 元",
    session_ended: "会话已结束，请重新登录",
    phases: { idle: "空闲", awaiting_payment: "待缴费", opening: "抬杆中", open: "道闸已开，等待车辆通过",
              closing: "落杆中", blocked: "已放行但道闸未抬起" },
    colors: { blue: "蓝牌", yellow: "黄牌", green: "绿牌", white: "白牌", black: "黑牌", "": "" },
    classes: { monthly: "月卡", whitelist: "白名单", temporary: "临时车", stored_value: "储值卡", "": "—" },
    // the lane card: pictures, each provider's payment state, the stored-value top-up (supervisors)
    picture: { exit: "出口抓拍", entry: "入口抓拍" }, entry_picture: "入场抓拍", no_picture: "无图片", providers: "平台支付",
    pay_states: { not_asked: "未发起", charging: "扣款中", no_answer: "无应答", pending: "支付中（查询中）",
                  fallback: "超时未完成（后台核对）", paid: "已支付", refused: "已拒绝", skipped: "不适用" },
    topup: "储值充值", topup_title: "储值卡充值", topup_plate: "车牌", topup_amount: "充值金额（元）",
    topup_confirm: "确认充值", topup_done: "{p} 已充值 {y} 元，余额 {b} 元", need_plate: "请填写车牌",
  },
  en: {
    title: "Booth console", offline: "Connection lost, reconnecting…", logout: "Log out", login: "Operator login",
    user: "User", password: "Password", login_button: "Log in", plate: "Plate", class: "Class", entered: "Entered",
    stay: "Stay", due: "Due", payment: "Payment", board: "Board", release_cash: "Cash release", release: "Release",
    release_title: "Release", amount: "Cash taken (yuan)", reason: "Reason", confirm: "Release", cancel: "Cancel",
    entry: "entry", exit: "exit", bad_credentials: "Wrong user name or password",
    locked_out: "Too many failed logins: try again in {s} s", need_reason: "A reason is required",
    bad_amount: "Amount like 12 or 12.50", released: "Released", refused: "Not released: {m}",
    already_opening: "The barrier is already opening (another operator may have just released it): nothing done",
    not_handled: "Not released: {m}", not_delivered: "Release decided but the barrier did not confirm: {m}",
    error: "Failed: {m}", settling: "platform payment in progress", due_unknown: "unknown (no entry record)", no_plate: "no plate", waiting_pay: "waiting for payment", none: "—",
    minutes: "{h} h {m} min", short: "{y} yuan short", session_ended: "Session ended: log in again",
    phases: { idle: "idle", awaiting_payment: "waiting to pay", opening: "opening", open: "open, car to pass",
              closing: "closing", blocked: "released but the arm did not rise" },
    colors: { blue: "(blue)", yellow: "(yellow)", green: "(green)", white: "(white)", black: "(black)", "": "" },
    classes: { monthly: "monthly", whitelist: "whitelist", temporary: "temporary", stored_value: "stored value", "": "—" },
    // the lane card: pictures, each provider's payment state, the stored-value top-up (supervisors)
    picture: { exit: "At the exit", entry: "At the entry" }, entry_picture: "When it entered", no_picture: "no picture", providers: "Platforms",
    pay_states: { not_asked: "not asked", charging: "charging", no_answer: "no answer", pending: "pending (polled)",
                  fallback: "not settled in time (checked in the background)", paid: "paid", refused: "refused",
                  skipped: "skipped" },
    topup: "Top up", topup_title: "Stored-value top-up", topup_plate: "Plate", topup_amount: "Amount (yuan)",
    topup_confirm: "Top up", topup_done: "{p} topped up {y} yuan, balance {b} yuan", need_plate: "A plate is required",
  },
};

let lang = localStorage.getItem("lanectl.lang") || "zh";
let csrf = "";
let role = "";
let events = null;
const lanes = new Map();        // lane id -> its latest view
const results = new Map();      // lane id -> [() => text in the current language, class, record id] of its last action
window.__seen = {};             // record id -> Date.now() when this page first showed it (the browser test reads it)

const $ = (sel) => document.querySelector(sel);
const t = (key, args = {}) => String(TEXT[lang][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => args[k] ?? "");
const yuan = (fen) => (fen / 100).toFixed(2);
window.lanectlConsole = { api, lang: () => lang };  // for records.js (the records and shift tab)

function translatePage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  $("#lang").textContent = lang === "zh" ? "English" : "中文";
  lanes.forEach(render);
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (method === "POST" && csrf) headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined,
                                  credentials: "same-origin" });
  let data = {};
  try { data = await res.json(); } catch (e) { /* an empty or non-JSON answer */ }
  return { status: res.status, data };
}

function show(view) {
  $("#login-view").hidden = view !== "login";
  $("#lanes-view").hidden = view !== "lanes";
  $("#logout").hidden = view !== "lanes";
  $("#topup-open").hidden = view !== "lanes" || role !== "supervisor";
}

function loggedIn(who) {
  csrf = who.csrf;
  role = who.role;
  $("#topup-open").hidden = role !== "supervisor";  // the server refuses others (403) all the same
  $("#who").textContent = `${who.user} (${who.role})`;
  show("lanes");
  connect();
}

function loggedOut(message) {
  csrf = "";
  role = "";
  $("#topup-open").hidden = true;
  if (events) { events.close(); events = null; }
  $("#who").textContent = "";
  $("#link").hidden = true;
  $("#login-error").textContent = message || "";
  show("login");
}

function connect() {
  if (events) events.close();
  events = new EventSource("/console/events");
  events.addEventListener("snapshot", (e) => {
    $("#link").hidden = true;
    const data = JSON.parse(e.data);
    data.lanes.forEach((view) => update(view));
  });
  events.addEventListener("lane", (e) => update(JSON.parse(e.data)));
  events.addEventListener("logout", () => loggedOut(t("session_ended")));
  events.onerror = async () => {
    $("#link").hidden = false;
    if (events && events.readyState === EventSource.CLOSED) {  // refused (401): the session is gone
      const { status } = await api("GET", "/console/session");
      if (status === 401) loggedOut(t("session_ended")); else setTimeout(connect, 2000);
    }
  };
}

function update(view) {
  view.received = Date.now();
  lanes.set(view.lane, view);
  if (view.car && !(view.car.record_id in window.__seen)) window.__seen[view.car.record_id] = Date.now();
  render(view);
}

function stay(view) {
  // the daemon's figure when the view came, counted on by this page's clock (the two clocks may differ)
  if (view.car.stay_min === null || view.car.stay_min === undefined) return t("none");
  const minutes = view.car.stay_min + Math.max(0, Math.floor((Date.now() - view.received) / 60000));
  return t("minutes", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

function render(view) {
  let card = document.getElementById(`lane-${view.lane}`);
  if (!card) {
    card = $("#lane-card").content.firstElementChild.cloneNode(true);
    card.id = `lane-${view.lane}`;
    card.dataset.lane = view.lane;
    card.querySelector(".cash").addEventListener("click", () => openDialog(view.lane, true));
    card.querySelector(".release").addEventListener("click", () => openDialog(view.lane, false));
    $("#lanes").appendChild(card);
  }
  card.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  const car = view.car;
  const faults = Object.entries(view.faults || {}).map(([k, v]) => `${k}: ${v}`).join("; ");
  card.className = `lane ${view.phase}${faults ? " faulted" : ""}`;
  card.querySelector(".name").textContent = view.name;
  card.querySelector(".direction").textContent = t(view.direction);
  card.querySelector(".phase").textContent = TEXT[lang].phases[view.phase] || view.phase;
  card.querySelector(".plate").textContent = !car ? t("none") : !car.plate ? t("no_plate") :
    `${car.plate} ${TEXT[lang].colors[car.color] ?? car.color ?? ""}`.trim();
  card.querySelector(".class").textContent = car ? (TEXT[lang].classes[car.vehicle_class] ?? car.vehicle_class) : t("none");
  // lot time as the daemon wrote it (the booth PC's own zone may differ)
  card.querySelector(".entered").textContent = car && car.entered_at ? car.entered_at.slice(0, 16).replace("T", " ") : t("none");
  card.querySelector(".stay").textContent = car ? stay(view) : t("none");
  const waiting = view.phase === "awaiting_payment" && car;
  // no stay found and nothing charged for that: the fee is not known, not zero (the booth decides)
  const unknownDue = waiting && view.direction === "exit" && !car.entry_record_id && !car.due_fen;
  card.querySelector(".due").textContent = !waiting ? t("none") : unknownDue ? t("due_unknown") : `¥${yuan(car.due_fen)}`;
  card.querySelector(".payment").textContent = !waiting ? t("none") : car.settling ? t("settling") :
    `${t("waiting_pay")}${view.payments.length ? " (" + view.payments.join(", ") + ")" : ""}`;
  card.querySelector(".board").textContent = view.board || t("none");
  const detail = card.querySelector(".detail");
  detail.replaceChildren(...(waiting ? car.breakdown || car.detail.map((l) => ({ zh: l, en: l, kind: "raw" })) : [])
    .map((line) => {
      const li = document.createElement("li"); li.textContent = line[lang]; li.className = line.kind; return li;
    }));
  renderProviders(card, waiting ? car.providers || [] : []);
  renderPictures(card, car, view.direction);
  card.querySelector(".faults").textContent = faults;
  // an action's result belongs to the car it was for: the next car at the lane starts with none
  if (car && results.has(view.lane) && results.get(view.lane)[2] && results.get(view.lane)[2] !== car.record_id)
    results.delete(view.lane);
  const [say, cls] = results.get(view.lane) || ["", ""];
  const result = card.querySelector(".result");
  result.textContent = typeof say === "function" ? say() : say;  // in the language shown now
  result.className = `result ${cls}`;
  card.querySelector(".cash").disabled = !waiting;
  card.querySelector(".cash").hidden = view.direction !== "exit";  // nobody pays at an entry
  window.laneActions?.(card, view);  // refuse / correct / admit (actions.js)
}

function renderProviders(card, providers) {
  // each platform's state for the waiting car, with the platform's own reason when it gave one
  card.querySelector(".providers-row").hidden = !providers.length;
  card.querySelector(".providers").replaceChildren(...providers.map((p) => {
    const li = document.createElement("li");
    li.className = `provider ${p.state}`;
    li.dataset.provider = p.provider;
    const amount = p.state === "paid" ? ` ¥${yuan(p.amount_fen)}` : "";
    li.textContent = `${p.provider}: ${TEXT[lang].pay_states[p.state] || p.state}${amount}` +
      (p.reason && p.state !== "paid" ? ` — ${p.reason}` : "");
    return li;
  }));
}

function renderPictures(card, car, direction) {
  // the car at the lane and, at an exit, its entry: by record id; a missing one says so plainly
  const pics = [[".pic.here", car && car.picture], [".pic.entry", car && car.entry_picture]];
  card.querySelector(".pictures").hidden = !car;
  for (const [sel, url] of pics) {
    const fig = card.querySelector(sel);
    const img = fig.querySelector("img");
    fig.querySelector(".label").textContent = sel === ".pic.here" ? TEXT[lang].picture[direction] || "" : t("entry_picture");
    fig.hidden = sel === ".pic.entry" && !url;
    if (!url) { img.removeAttribute("src"); delete img.dataset.url; img.hidden = true; fig.classList.add("missing"); continue; }
    if (img.dataset.url !== url) {
      img.dataset.url = url;
      fig.classList.remove("missing");
      img.hidden = false;
      let tries = 0;  // a picture still being written when the car is shown: asked again twice, a second apart
      img.onerror = () => {
        img.hidden = true; fig.classList.add("missing");
        if (++tries <= 2) setTimeout(() => { if (img.dataset.url === url) img.src = `${url}?try=${tries}`; }, 1000);
      };
      img.onload = () => { img.hidden = false; fig.classList.remove("missing"); };
      img.src = url;
    }
  }
  card.querySelectorAll(".pic .none").forEach((el) => { el.textContent = t("no_picture"); });
}

function openTopup() {
  const form = $("#topup-form");
  form.reset();
  $("#topup-error").textContent = "";
  $("#topup-result").textContent = "";
  $("#topup-dialog").showModal();
}

async function submitTopup(event) {
  event.preventDefault();
  const form = $("#topup-form");
  const plate = form.plate.value.trim();
  const reason = form.reason.value.trim();
  const amount = toFen(form.amount.value);
  const say = (text) => { $("#topup-error").textContent = text; };
  if (!plate) return say(t("need_plate"));
  if (amount === null || amount === 0) return say(t("bad_amount"));
  if (!reason) return say(t("need_reason"));
  const { status, data } = await api("POST", "/console/topup", { plate, amount_fen: amount, reason });
  if (status === 401) { $("#topup-dialog").close(); loggedOut(t("session_ended")); return; }
  if (status !== 200) return say(t("error", { m: data.message || status }));
  say("");
  form.amount.value = "";  // done: a second press must not top up twice
  $("#topup-result").textContent = t("topup_done", { p: data.plate, y: yuan(data.amount_fen), b: yuan(data.balance_fen) });
}

let dialogLane = null;
let dialogRecord = "";  // the record of the car shown when the dialog opened
function openDialog(laneId, cash) {
  const view = lanes.get(laneId);
  dialogLane = laneId;
  dialogRecord = view.car?.record_id || "";
  const dialog = $("#release-dialog");
  dialog.querySelector(".lane-name").textContent = view.name;
  dialog.querySelector(".car").textContent = view.car ? `${view.car.plate} ${view.phase === "awaiting_payment" ? "¥" + yuan(view.car.due_fen) : ""}` : "";
  dialog.querySelector(".amount-row").hidden = !cash;
  const form = $("#release-form");
  form.amount.value = cash && view.car ? yuan(view.car.due_fen) : "";
  form.reason.value = cash ? (lang === "zh" ? "现金缴费" : "cash paid") : "";
  $("#release-error").textContent = "";
  dialog.showModal();
}

function toFen(text) {
  const m = /^\s*(\d{1,6})(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));  // no float on the money path
}

async function submitRelease(event) {
  event.preventDefault();
  const form = $("#release-form");
  const cash = !form.querySelector(".amount-row").hidden;
  const reason = form.reason.value.trim();
  if (!reason) { $("#release-error").textContent = t("need_reason"); return; }
  let amount = null;
  if (cash) {
    amount = toFen(form.amount.value);
    if (amount === null) { $("#release-error").textContent = t("bad_amount"); return; }
  }
  const laneId = dialogLane;
  $("#release-dialog").close();
  const shown = dialogRecord;  // the car this operator saw: if it has gone since, the lane does nothing
  const { status, data } = await api("POST", `/console/lanes/${encodeURIComponent(laneId)}/release`,
                                     { reason, amount_fen: amount, ...(shown ? { record_id: shown } : {}) });
  if (status === 401) { loggedOut(t("session_ended")); return; }
  const cls = status === 200 && data.outcome === "released" && data.opened ? "ok" : "refused";
  const say = () => {
    if (status !== 200) return t("error", { m: data.message || status });
    if (data.outcome === "released" && data.opened)
      return t("released") + (data.short_fen ? ` · ${t("short", { y: yuan(data.short_fen) })}` : "");
    if (data.outcome === "released") return t("not_delivered", { m: data.message });
    if (data.outcome === "already_opening") return t("already_opening");
    if (data.outcome === "car_gone" && window.boothGoneText) return window.boothGoneText(data.message);
    return t(data.outcome === "not_handled" ? "not_handled" : "refused", { m: data.message });
  };
  results.set(laneId, [say, cls, data.record_id || shown]);
  if (lanes.has(laneId)) render(lanes.get(laneId));
}

let lastTouch = 0;
function activity() {  // the operator is here: idle logout counts from the last action
  if (!csrf || Date.now() - lastTouch < 60000) return;
  lastTouch = Date.now();
  api("POST", "/console/touch");
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("lanectl.lang", lang);
    translatePage();
  });
  $("#login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const { status, data } = await api("POST", "/console/login", { user: form.user.value, password: form.password.value });
    form.password.value = "";
    if (status === 200) { lastTouch = Date.now(); loggedIn(data); return; }
    $("#login-error").textContent = status === 429 ? t("locked_out", { s: data.retry_after_s }) :
      status === 401 ? t("bad_credentials") : t("error", { m: data.message || status });
  });
  $("#logout").addEventListener("click", async () => { await api("POST", "/console/logout"); loggedOut(""); });
  $("#release-form").addEventListener("submit", submitRelease);
  $("#release-cancel").addEventListener("click", () => $("#release-dialog").close());
  $("#topup-open").addEventListener("click", openTopup);
  $("#topup-form").addEventListener("submit", submitTopup);
  $("#topup-cancel").addEventListener("click", () => $("#topup-dialog").close());
  document.addEventListener("click", activity);
  document.addEventListener("keydown", activity);
  setInterval(() => lanes.forEach(render), 30000);  // the stay keeps counting
  translatePage();
  const { status, data } = await api("GET", "/console/session");
  if (status === 200) loggedIn(data); else show("login");
});
