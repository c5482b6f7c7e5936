// A task page's live events: an EventSource on the task's event stream, each event added to
// the top of the table. Everything from the server is set with textContent, never as HTML.
'use strict';
(function () {
  const rows = document.getElementById('events');
  const live = document.getElementById('live');
  const reload = document.getElementById('reload-note');
  if (!rows || !window.EventSource) {
    return;
  }
  // Events after which the page's other sections are out of date.
  const stale = new Set(['execution', 'checkpoint_created', 'checkpoint_restored', 'decision_recorded',
    'status_changed', 'synced']);
  const source = new EventSource(rows.dataset.stream);
  source.addEventListener('open', function () {
    live.textContent = 'live';
    live.className = 'live on';
  });
  source.addEventListener('error', function () {
    live.textContent = 'reconnecting…';
    live.className = 'live off';
  });
  source.addEventListener('task-event', function (message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    const row = document.createElement('tr');
    row.className = 'event new';
    row.dataset.id = message.lastEventId;
    for (const [name, value] of [['at', event.at], ['type', event.type], ['data', event.summary]]) {
      const cell = document.createElement('td');
      cell.className = name;
      cell.textContent = String(value === undefined || value === null ? '' : value);
      row.appendChild(cell);
    }
    rows.insertBefore(row, rows.firstChild);
    if (stale.has(String(event.type)) && reload) {
      reload.hidden = false;
    }
  });
})();
