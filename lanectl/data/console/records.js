// The records and shift tab of the booth console (issue 18 item 4): records search with pictures, the shift's
// takings, platform payments still running and money to refund, the outbox; CSV files. Read-only: every call is a
// GET behind the session (console.js logs in; its api() and language come through window.lanectlConsole).
"use strict";

const RTEXT = {
  zh: {
    tab_lanes: "车道", tab_records: "记录与班次", pane_search: "记录查询", pane_shift: "班次收费",
    pane_money: "支付与退款", pane_outbox: "上传队列", plate: "车牌", match: "匹配", partial: "包含", exact: "精确",
    lane: "车道", all: "全部", from: "从", to: "到", kind: "类型", status: "状态", search: "查询", csv: "导出 CSV",
    more: "更多", close: "关闭", period: "时段", today: "今日（0 点至今）", yesterday: "昨日", custom: "自定义",
    refresh: "刷新", settling_title: "平台支付进行中", refund_title: "待退款（车辆离场后到账或重复支付）",
    time: "时间", picture: "图片", reason: "原因", fee: "应收", paid: "实收", short_over: "少收/多收",
    operator: "操作员", none: "—", shown: "已显示 {n} 条", nothing: "没有符合条件的记录", error: "失败：{m}",
    session_ended: "会话已结束，请重新登录", count: "笔数", amount: "金额（元）", method: "收费方式",
    releases: "人工放行", entries: "入场", exits: "出场", money_total: "收费合计", short: "少收", over: "多收",
    by_method: "按收费方式", by_operator: "按操作员", by_lane: "按车道", shift_period: "{a} 至 {b}",
    provider: "支付平台", since: "开始于", car: "车辆", waiting: "车辆在道口等待", reconciling: "车辆已离开，对账中",
    trade_no: "交易号", why: "原因", at: "到账时间", second_payment: "同一笔订单重复支付",
    after_exit: "车辆已离场后到账", for_refund: "待退款", no_rows: "无", destination: "上传目标", pending: "待上传",
    dead: "已放弃", oldest: "最早一条", age: "已等待", last_error: "最近错误", failing_since: "故障开始",
    sent: "已上传", minutes_ago: "{m} 分钟", seconds_ago: "{s} 秒", uid: "uid {u}",
    kinds: { "": "全部", entry: "入场", exit: "出场", release: "放行记录" },
    statuses: { "": "全部", inside: "在场", refused: "拒绝入场", exited: "已出场", superseded: "被替代",
                leaving: "放行离场", awaiting_payment: "待缴费", paid: "已支付", released: "人工放行",
                abandoned: "已离开未缴" },
    attempts: { charging: "扣款中", pending: "待平台确认", fallback: "超时，对账中", failed: "失败", paid: "已付",
                skipped: "跳过" },
    methods: { cash: "现金", operator: "人工", stored_value: "储值卡" },
    reasons: { temporary: "临时车", monthly: "月卡", whitelist: "白名单", stored_value: "储值卡扣费",
               blacklist: "黑名单", free: "免费", zero_fee: "零收费", paid_ahead: "已预付",
               no_entry_record: "无入场记录", monthly_spaces_full: "月卡车位已满", monthly_expired: "月卡已过期",
               monthly_not_started: "月卡未生效", monthly_grace: "月卡宽限期", temporary_not_allowed: "不允许临时车",
               unreadable_plate: "车牌无法识别", ambiguous_entry: "多条入场记录，待人工确认", operator: "人工放行" },
  },
  en: {
    tab_lanes: "Lanes", tab_records: "Records & shift", pane_search: "Records", pane_shift: "Shift takings",
    pane_money: "Payments & refunds", pane_outbox: "Outbox", plate: "Plate", match: "Match", partial: "contains",
    exact: "exact", lane: "Lane", all: "all", from: "From", to: "To", kind: "Kind", status: "Status",
    search: "Search", csv: "Export CSV", more: "More", close: "Close", period: "Period", today: "Today (since 00:00)",
    yesterday: "Yesterday", custom: "From / to", refresh: "Refresh", settling_title: "Platform payments in progress",
    refund_title: "For refund (paid after the car left, or paid twice)", time: "Time", picture: "Picture",
    reason: "Reason", fee: "Fee", paid: "Paid", short_over: "Short/over", operator: "Operator", none: "—",
    shown: "{n} shown", nothing: "No records match", error: "Failed: {m}", session_ended: "Session ended: log in again",
    count: "Count", amount: "Amount (yuan)", method: "Method", releases: "Operator releases", entries: "Entries",
    exits: "Exits", money_total: "Takings", short: "Short", over: "Over", by_method: "By payment method",
    by_operator: "By operator", by_lane: "By lane", shift_period: "{a} to {b}", provider: "Provider",
    since: "Since", car: "Car", waiting: "car waiting at the lane", reconciling: "car left, reconciling",
    trade_no: "Trade no.", why: "Why", at: "Paid at", second_payment: "paid twice for one charge",
    after_exit: "paid after the car had left", for_refund: "for refund", no_rows: "none", destination: "Destination",
    pending: "Pending", dead: "Given up", oldest: "Oldest", age: "Waiting", last_error: "Last error",
    failing_since: "Failing since", sent: "Sent", minutes_ago: "{m} min", seconds_ago: "{s} s", uid: "uid {u}",
    kinds: { "": "all", entry: "entry", exit: "exit", release: "release" },
    statuses: { "": "all", inside: "inside", refused: "refused", exited: "exited", superseded: "superseded",
                leaving: "leaving", awaiting_payment: "awaiting payment", paid: "paid", released: "released",
                abandoned: "abandoned" },
    attempts: { charging: "charging", pending: "pending", fallback: "window over, reconciling", failed: "failed",
                paid: "paid", skipped: "skipped" },
    methods: { cash: "cash", operator: "operator", stored_value: "stored value" },
    reasons: { operator: "operator release" },
  },
};

(() => {
  const $ = (sel) => document.querySelector(sel);
  const lang = () => (window.lanectlConsole ? window.lanectlConsole.lang() : "zh");
  const rt = (key, args = {}) => String(RTEXT[lang()][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => args[k] ?? "");
  const word = (group, key) => RTEXT[lang()][group][key] ?? key;
  // integer fen to yuan, no float on the money path: -150 -> "-1.50"
  const yuan = (fen) => {
    const f = Math.abs(fen || 0);
    return `${fen < 0 ? "-" : ""}${Math.floor(f / 100)}.${String(f % 100).padStart(2, "0")}`;
  };
  // a record's reason in the operator's words: "operator:现金缴费" -> "人工放行：现金缴费", "monthly_expired" -> "月卡已过期"
  const reason = (r) => {
    const [head, ...rest] = (r || "").split(":");
    const said = RTEXT[lang()].reasons[head] ?? head.replace(/_/g, " ");
    return rest.length ? `${said}${lang() === "zh" ? "：" : ": "}${rest.join(":")}` : said;
  };
  const method = (m) => m.split(":").map((part, i) => (i === 0 ? word("methods", part) : part)).join(" · ");

  let current = "lanes";      // the header tab shown
  let pane = "search";        // the tab's own pane
  let search = null;          // the search shown: its query string, its next cursor, its rows so far
  let lanesKnown = {};        // lane id -> name (each search answer carries them)

  async function get(path) {
    const { status, data } = await window.lanectlConsole.api("GET", path);
    if (status === 401) throw new Error(rt("session_ended"));
    if (status !== 200) throw new Error(data.message || String(status));
    return data;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text ?? "";
    if (cls) td.className = cls;
    return td;
  }

  function header(table, keys) {
    const tr = document.createElement("tr");
    keys.forEach((k) => { const th = document.createElement("th"); th.textContent = rt(k); tr.appendChild(th); });
    table.querySelector("thead").replaceChildren(tr);
  }

  function emptyRow(table, n) {
    const tr = document.createElement("tr");
    const td = cell(rt("no_rows"), "empty");
    td.colSpan = n;
    tr.appendChild(td);
    table.querySelector("tbody").appendChild(tr);
  }

  // a datetime-local value ("2026-12-07T08:00") is lot time as typed: the server reads it in the site's zone
  function params(form, names) {
    const q = new URLSearchParams();
    names.forEach((n) => { const v = form[n].value.trim(); if (v) q.set(n, v); });
    return q;
  }

  // --- records search -------------------------------------------------------------------------------------------
  const SEARCH_COLUMNS = ["time", "lane", "plate", "kind", "status", "reason", "fee", "paid", "short_over", "operator",
                          "picture"];

  function fillSelects() {
    const form = $("#records-search");
    [["kind", "kinds"], ["status", "statuses"]].forEach(([name, group]) => {
      const keep = form[name].value;
      form[name].replaceChildren(...Object.keys(RTEXT.zh[group]).map((k) => {
        const o = document.createElement("option"); o.value = k; o.textContent = word(group, k); return o;
      }));
      form[name].value = keep;
    });
    const laneSelect = form.lane;
    const keep = laneSelect.value;
    const all = document.createElement("option");
    all.value = ""; all.textContent = rt("all");
    laneSelect.replaceChildren(all, ...Object.entries(lanesKnown).map(([id, name]) => {
      const o = document.createElement("option"); o.value = id; o.textContent = name; return o;
    }));
    laneSelect.value = keep;
  }

  function recordRow(r) {
    const tr = document.createElement("tr");
    tr.dataset.record = r.record_id;
    const so = r.short_fen ? `-${yuan(r.short_fen)}` : r.over_fen ? `+${yuan(r.over_fen)}` : "";
    const who = r.operator || (r.operator_uid !== null && r.operator_uid !== undefined ? rt("uid", { u: r.operator_uid }) : "");
    tr.append(cell(r.at, "time"), cell(r.lane_name), cell(r.plate || rt("none"), "plate"),
              cell(word("kinds", r.kind)), cell(word("statuses", r.status), `status ${r.status}`), cell(reason(r.reason)),
              cell(r.total_fen ? yuan(r.total_fen) : "", "money"), cell(r.paid_fen ? yuan(r.paid_fen) : "", "money"),
              cell(so, "money"), cell(who));
    const pic = cell("", "picture");
    if (r.image) {
      const img = document.createElement("img");
      img.className = "thumb"; img.loading = "lazy"; img.src = r.image; img.alt = r.plate;
      img.addEventListener("click", () => { $("#picture-full").src = r.image; $("#picture-dialog").showModal(); });
      pic.appendChild(img);
    }
    tr.appendChild(pic);
    return tr;
  }

  async function runSearch(more) {
    const table = $("#records-table");
    $("#records-error").textContent = "";
    if (!more) {
      const q = params($("#records-search"), ["plate", "match", "lane", "from", "to", "kind", "status"]);
      search = { query: q.toString(), next: null, shown: 0 };
      const csv = new URLSearchParams(q); csv.set("lang", lang());
      $("#records-csv").href = `/console/records.csv?${csv}`;
    }
    const q = new URLSearchParams(search.query);
    q.set("limit", "50");
    if (more && search.next) q.set("cursor", search.next);
    try {
      const data = await get(`/console/records?${q}`);
      const known = JSON.stringify(lanesKnown);
      lanesKnown = data.lanes || lanesKnown;
      if (JSON.stringify(lanesKnown) !== known) fillSelects();
      header(table, SEARCH_COLUMNS);
      const body = table.querySelector("tbody");
      if (!more) body.replaceChildren();
      data.records.forEach((r) => body.appendChild(recordRow(r)));
      search.next = data.next;
      search.shown += data.records.length;
      $("#records-more").hidden = !data.next;
      $("#records-count").textContent = search.shown ? rt("shown", { n: search.shown }) : rt("nothing");
    } catch (e) {
      $("#records-error").textContent = rt("error", { m: e.message });
    }
  }

  // --- the shift ------------------------------------------------------------------------------------------------
  function shiftQuery() {
    const form = $("#shift-form");
    const q = new URLSearchParams();
    if (form.period.value === "yesterday") {
      q.set("day", "yesterday");  // by the lot's calendar, whatever this PC's zone
    } else if (form.period.value === "custom") {
      params(form, ["from", "to"]).forEach((v, k) => q.set(k, v));
    }
    return q;
  }

  function figureTable(title, heads, rows) {
    const box = document.createElement("div");
    box.className = "figures";
    const h = document.createElement("h3"); h.textContent = title;
    const table = document.createElement("table");
    table.appendChild(document.createElement("thead"));
    table.appendChild(document.createElement("tbody"));
    header(table, heads);
    rows.forEach((cells) => {
      const tr = document.createElement("tr");
      cells.forEach(([text, cls]) => tr.appendChild(cell(text, cls)));
      table.querySelector("tbody").appendChild(tr);
    });
    if (!rows.length) emptyRow(table, heads.length);
    box.append(h, table);
    return box;
  }

  async function loadShift() {
    $("#shift-error").textContent = "";
    $("#shift-form").querySelectorAll(".custom").forEach((el) => { el.hidden = $("#shift-form").period.value !== "custom"; });
    const q = shiftQuery();
    const csv = new URLSearchParams(q); csv.set("lang", lang());
    $("#shift-csv").href = `/console/shift.csv?${csv}`;
    try {
      const s = await get(`/console/shift?${q}`);
      const summary = document.createElement("p");
      summary.className = "summary";
      summary.textContent = `${rt("shift_period", { a: s.from, b: s.to })} · ${rt("entries")} ${s.entries} · ` +
        `${rt("exits")} ${s.exits} · ${rt("releases")} ${s.releases} · ${rt("money_total")} ¥${yuan(s.money_fen)} · ` +
        `${rt("short")} ¥${yuan(s.short_fen)} · ${rt("over")} ¥${yuan(s.over_fen)}`;
      const lanesRows = Object.keys({ ...s.entries_by_lane, ...s.exits_by_lane }).map((id) =>
        [[lanesKnown[id] || id], [String(s.entries_by_lane[id] || 0), "money"], [String(s.exits_by_lane[id] || 0), "money"]]);
      $("#shift-figures").replaceChildren(summary,
        figureTable(rt("by_method"), ["method", "count", "amount"],
                    s.money.map((m) => [[method(m.method)], [String(m.count), "money"], [yuan(m.amount_fen), "money"]])),
        figureTable(rt("by_operator"), ["operator", "releases", "paid", "short", "over"],
                    s.operators.map((o) => [[o.operator], [String(o.releases), "money"], [yuan(o.paid_fen), "money"],
                                            [yuan(o.short_fen), "money"], [yuan(o.over_fen), "money"]])),
        figureTable(rt("by_lane"), ["lane", "entries", "exits"], lanesRows));
    } catch (e) {
      $("#shift-error").textContent = rt("error", { m: e.message });
    }
  }

  // --- payments still running, money to refund ---------------------------------------------------------------------
  async function loadMoney() {
    $("#money-error").textContent = "";
    try {
      const data = await get("/console/settlements");
      const settling = $("#settling-table");
      header(settling, ["lane", "plate", "provider", "status", "amount", "since", "car"]);
      settling.querySelector("tbody").replaceChildren(...data.settling.map((r) => {
        const tr = document.createElement("tr");
        tr.append(cell(r.lane_name), cell(r.plate || rt("none"), "plate"), cell(r.provider),
                  cell(word("attempts", r.status)), cell(yuan(r.amount_fen), "money"), cell(r.since, "time"),
                  cell(rt(r.car_waiting ? "waiting" : "reconciling")));
        tr.title = r.detail || "";
        return tr;
      }));
      if (!data.settling.length) emptyRow(settling, 7);
      const refunds = $("#refund-table");
      header(refunds, ["lane", "plate", "provider", "trade_no", "amount", "at", "why"]);
      refunds.querySelector("tbody").replaceChildren(...data.for_refund.map((r) => {
        const tr = document.createElement("tr");
        tr.className = "for-refund";
        tr.append(cell(r.lane_name), cell(r.plate || rt("none"), "plate"), cell(method(r.method)), cell(r.trade_no),
                  cell(yuan(r.amount_fen), "money"), cell(r.at, "time"), cell(`${rt("for_refund")}: ${rt(r.why)}`));
        return tr;
      }));
      if (!data.for_refund.length) emptyRow(refunds, 7);
    } catch (e) {
      $("#money-error").textContent = rt("error", { m: e.message });
    }
  }

  // --- the outbox ---------------------------------------------------------------------------------------------------
  function age(s) {
    if (s === null || s === undefined) return rt("none");
    return s >= 120 ? rt("minutes_ago", { m: Math.floor(s / 60) }) : rt("seconds_ago", { s });
  }

  async function loadOutbox() {
    $("#outbox-error").textContent = "";
    try {
      const data = await get("/console/outbox");
      const table = $("#outbox-table");
      header(table, ["destination", "pending", "dead", "oldest", "age", "last_error", "failing_since", "sent"]);
      const rows = Object.entries(data.destinations);
      table.querySelector("tbody").replaceChildren(...rows.map(([dest, d]) => {
        const tr = document.createElement("tr");
        if (d.failing_since || d.dead) tr.className = "failing";
        tr.append(cell(dest), cell(String(d.pending), "money"), cell(String(d.dead), "money"),
                  cell(d.oldest_at || rt("none"), "time"), cell(age(d.oldest_age_s)), cell(d.last_error),
                  cell(d.failing_since || "", "time"), cell(String(d.sent), "money"));
        return tr;
      }));
      if (!rows.length) emptyRow(table, 8);
    } catch (e) {
      $("#outbox-error").textContent = rt("error", { m: e.message });
    }
  }

  // --- tabs, panes, language ----------------------------------------------------------------------------------------
  const LOADERS = { search: () => runSearch(false), shift: loadShift, money: loadMoney, outbox: loadOutbox };

  function showPane(name) {
    pane = name;
    document.querySelectorAll("#records-view .subtab").forEach((b) => b.classList.toggle("current", b.dataset.pane === name));
    document.querySelectorAll("#records-view .pane").forEach((p) => { p.hidden = p.id !== `pane-${name}`; });
    LOADERS[name]();
  }

  function showTab(name) {
    current = name;
    $("#tab-lanes").classList.toggle("current", name === "lanes");
    $("#tab-records").classList.toggle("current", name === "records");
    $("#lanes-view").hidden = name !== "lanes";
    $("#records-view").hidden = name !== "records";
    if (name === "records") showPane(pane);
  }

  function translate() {
    document.querySelectorAll("[data-rt]").forEach((el) => { el.textContent = rt(el.dataset.rt); });
    fillSelects();
    if (current === "records") showPane(pane);  // the tables re-rendered in the new language
  }

  // console.js shows the login form or the lanes; the tabs follow: logged out, back to the lanes, tabs hidden
  function follow() {
    if (!$("#login-view").hidden) {
      current = "lanes";
      $("#tabs").hidden = true;
      $("#records-view").hidden = true;
      return;
    }
    if (!$("#lanes-view").hidden) {
      $("#tabs").hidden = false;
      if (current === "records") showTab("lanes");  // console.js brought the lanes back (a new login)
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#tab-lanes").addEventListener("click", () => showTab("lanes"));
    $("#tab-records").addEventListener("click", () => showTab("records"));
    document.querySelectorAll("#records-view .subtab").forEach((b) => b.addEventListener("click", () => showPane(b.dataset.pane)));
    $("#records-search").addEventListener("submit", (e) => { e.preventDefault(); runSearch(false); });
    $("#records-more").addEventListener("click", () => runSearch(true));
    $("#shift-form").addEventListener("submit", (e) => { e.preventDefault(); loadShift(); });
    $("#shift-form").period.addEventListener("change", loadShift);
    $("#money-refresh").addEventListener("click", loadMoney);
    $("#outbox-refresh").addEventListener("click", loadOutbox);
    $("#lang").addEventListener("click", translate);  // after console.js's own handler: its language is switched
    const watch = new MutationObserver(follow);
    ["#login-view", "#lanes-view"].forEach((sel) => watch.observe($(sel), { attributes: true, attributeFilter: ["hidden"] }));
    translate();
    follow();
  });
})();
