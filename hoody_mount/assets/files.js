// The file page's behaviour: filter, local dates, actions (new folder, rename, move,
// delete), uploads with a progress bar each, digests, previews and the Mount panel.
// Every request goes to the entry's own href (its name's bytes percent-encoded), and
// every name is put in the page as text, never as HTML.
(function () {
  'use strict';
  var body = document.body;
  var folder = body.dataset.folder;  // the folder's path, as the user sees it
  // From the origin and path alone: a page opened as http://user:pw@host/ must not
  // hand fetch a URL with credentials in it (fetch refuses those).
  var here = location.origin + location.pathname.replace(/\/?$/, '/');
  var STASH = 'hoody-mount.messages';

  function $(id) { return document.getElementById(id); }
  function say(text, bad) {
    var line = $('message');
    line.textContent = text;
    line.className = 'message' + (bad ? ' failed' : '');
  }
  function human(size) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (size >= 1024 && i < units.length - 1) { size /= 1024; i += 1; }
    return (i ? size.toFixed(1) : String(size)) + ' ' + units[i];
  }
  // A login that ended while the page was open: back to the login page, then here.
  function relogin(status) {
    if (status === 401 && body.dataset.login !== undefined) {
      location.assign(body.dataset.login + '?next=' + encodeURIComponent(location.pathname));
      return true;
    }
    return false;
  }
  function reason(response) {
    relogin(response.status);
    return response.json().then(function (d) { return d.message || response.statusText; },
      function () { return response.status + ' ' + response.statusText; });
  }
  function joined(base, name) { return base.replace(/\/?$/, '/') + name; }

  // -- dates in the reader's time zone ------------------------------------------------
  var zone = '';
  try {
    var parts = new Intl.DateTimeFormat(undefined, {timeZoneName: 'short'}).formatToParts(new Date());
    parts.forEach(function (p) { if (p.type === 'timeZoneName') { zone = p.value; } });
  } catch (e) { zone = ''; }
  function two(n) { return (n < 10 ? '0' : '') + n; }
  document.querySelectorAll('time[datetime]').forEach(function (t) {
    var d = new Date(t.getAttribute('datetime'));
    if (isNaN(d)) { return; }
    t.textContent = d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate()) +
      ' ' + two(d.getHours()) + ':' + two(d.getMinutes()) + (zone ? ' ' + zone : '');
  });

  // -- filter -----------------------------------------------------------------------
  var rows = Array.prototype.slice.call(document.querySelectorAll('#listing tbody tr[data-name]'));
  var filter = $('filter');
  function applyFilter() {
    var wanted = filter.value.toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var keep = row.dataset.name.toLowerCase().indexOf(wanted) !== -1;
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    $('count').textContent = wanted ? shown + ' of ' + rows.length + ' shown' : '';
  }
  filter.addEventListener('input', applyFilter);
  document.addEventListener('keydown', function (event) {
    if (event.key === '/' && document.activeElement === body) {
      event.preventDefault();
      filter.focus();
    }
  });

  // -- the question dialog ------------------------------------------------------------
  // ask(title, value, ok, act): shows the dialog; act(value) returns a promise that
  // rejects with a message to show (the dialog stays open) or resolves (it closes).
  var dialog = $('ask');
  var asking = null;
  function ask(title, value, ok, act, label) {
    $('ask-title').textContent = title;
    $('ask-label').textContent = label || 'Name';
    var input = $('ask-input');
    input.hidden = value === null;
    $('ask-label').hidden = value === null;
    input.value = value === null ? '' : value;
    $('ask-ok').textContent = ok;
    $('ask-error').textContent = '';
    asking = act;
    dialog.showModal();
    if (value !== null) { input.focus(); input.select(); } else { $('ask-ok').focus(); }
  }
  $('ask-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = $('ask-input').value;
    if (!$('ask-input').hidden && !value) { $('ask-error').textContent = 'A name is needed.'; return; }
    $('ask-ok').disabled = true;
    asking(value).then(function (outcome) {
      dialog.close();
      if (outcome !== 'stay') { location.reload(); }
    }, function (message) {
      $('ask-error').textContent = String(message);
    }).then(function () { $('ask-ok').disabled = false; });
  });
  $('ask-cancel').addEventListener('click', function () { dialog.close(); });

  // (the page's own requests say so: a login that ended is answered without the
  // challenge that makes a browser show its own password prompt)
  var PAGE = {'X-Hoody-Page': '1'};
  function send(url, options) {
    options = options || {};
    options.headers = Object.assign({}, PAGE, options.headers || {});
    return fetch(url, options).then(function (r) {
      if (!r.ok) { return reason(r).then(function (m) { throw m; }); }
      return r;
    }, function (error) { throw 'the server could not be reached (' + error + ')'; });
  }
  function moveTo(row, target) {
    return send(row.dataset.href, {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({action: 'move', to: target})});
  }

  // -- actions on a row ---------------------------------------------------------------
  document.querySelectorAll('#listing button[data-act]').forEach(function (button) {
    button.addEventListener('click', function () {
      var row = button.closest('tr');
      var name = row.dataset.name;
      var menu = button.closest('details');
      if (menu) { menu.open = false; }
      var act = button.dataset.act;
      if (act === 'rename') {
        ask('Rename ' + name, name, 'Rename', function (value) {
          if (value.indexOf('/') !== -1) { return Promise.reject('A name cannot hold "/".'); }
          return moveTo(row, joined(folder, value));
        });
      } else if (act === 'move') {
        ask('Move ' + name + ' to the folder', folder, 'Move', function (value) {
          return moveTo(row, joined(value, name));
        }, 'Folder');
      } else if (act === 'delete') {
        var what = row.dataset.kind === 'dir' ? 'the folder ' + name + ' and everything in it' : name;
        ask('Delete ' + what + '?', null, 'Delete', function () {
          var url = row.dataset.href + (row.dataset.kind === 'dir' ? '?recursive' : '');
          return send(url, {method: 'DELETE'});
        });
      } else if (act === 'digest') {
        digest(row, button);
      } else if (act === 'preview') {
        preview(row);
      }
    });
  });
  // Escape closes an open menu, and gives the focus back to its button
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') { return; }
    document.querySelectorAll('details.menu[open]').forEach(function (menu) {
      menu.open = false;
      menu.querySelector('summary').focus();
    });
  });
  // close other menus when one opens
  document.querySelectorAll('details.menu').forEach(function (menu) {
    menu.addEventListener('toggle', function () {
      if (!menu.open) { return; }
      document.querySelectorAll('details.menu[open]').forEach(function (other) {
        if (other !== menu) { other.open = false; }
      });
    });
  });

  var newFolder = $('new-folder');
  if (newFolder) {
    newFolder.addEventListener('click', function () {
      ask('New folder in ' + folder, '', 'Create', function (value) {
        if (value.indexOf('/') !== -1) { return Promise.reject('A name cannot hold "/".'); }
        return send(here + encodeURIComponent(value) + '?mkdir', {method: 'POST'});
      });
    });
  }

  // -- digest, with how far it has come ------------------------------------------------
  function digest(row, button) {
    var cell = row.querySelector('.digest');
    var size = Number(row.dataset.size);
    var started = Date.now();
    var bar = document.createElement('progress');
    var note = document.createElement('span');
    bar.setAttribute('aria-label', 'Computing the SHA-256 of ' + row.dataset.name);
    cell.replaceChildren(bar, note);
    var finished = false;
    function poll() {  // (the server says how many bytes it has hashed so far)
      if (finished) { return; }
      send(row.dataset.href + '?sha256&progress').then(function (r) { return r.json(); }).then(function (d) {
        if (finished) { return; }
        if (d.hashed !== null && size) { bar.max = size; bar.value = d.hashed; }
        note.textContent = ' ' + (d.hashed !== null ? human(d.hashed) + ' of ' : '') + human(size) +
          ' hashed, ' + Math.round((Date.now() - started) / 1000) + ' s';
        setTimeout(poll, 700);
      }, function () { setTimeout(poll, 2000); });
    }
    setTimeout(poll, 300);
    send(row.dataset.href + '?sha256').then(function (r) { return r.json(); }).then(function (d) {
      var code = document.createElement('code');
      code.textContent = 'sha256 ' + d.sha256;
      cell.replaceChildren(code);
    }, function (message) {
      cell.replaceChildren(document.createTextNode(String(message)));
      cell.className = 'digest failed';
    }).then(function () { finished = true; });
    button.disabled = true;
  }

  // -- previews -------------------------------------------------------------------------
  var TEXT_LIMIT = 256 * 1024;
  var viewer = $('preview');
  function kindOf(type) {
    if (/^image\//.test(type)) { return 'image'; }
    if (/^video\//.test(type)) { return 'video'; }
    if (/^audio\//.test(type)) { return 'audio'; }
    if (type === 'application/pdf') { return 'pdf'; }
    if (/^text\/|[/+](json|xml|javascript|x-sh|toml|yaml|x-yaml|sql)$/.test(type)) { return 'text'; }
    return '';
  }
  function preview(row) {
    var kind = kindOf(row.dataset.type || '');
    var box = $('preview-body');
    $('preview-title').textContent = row.dataset.name;
    $('preview-download').href = row.dataset.href;
    box.replaceChildren();
    var element;
    if (kind === 'image') {
      element = document.createElement('img');
      element.alt = row.dataset.name;
    } else if (kind === 'video' || kind === 'audio') {
      element = document.createElement(kind);
      element.controls = true;
    } else if (kind === 'pdf') {
      element = document.createElement('iframe');
      element.title = row.dataset.name;
    } else {
      element = document.createElement('pre');
      element.textContent = 'Loading…';
      fetch(row.dataset.href, {headers: Object.assign({Range: 'bytes=0-' + (TEXT_LIMIT - 1)}, PAGE)}).then(function (r) {
        if (!r.ok) { return reason(r).then(function (m) { throw m; }); }
        return r.arrayBuffer();
      }).then(function (data) {
        var text = new TextDecoder('utf-8').decode(data);
        if (Number(row.dataset.size) > TEXT_LIMIT) {
          text += '\n\n[… the first ' + human(TEXT_LIMIT) + ' of ' + human(Number(row.dataset.size)) + ']';
        }
        element.textContent = text;
      }, function (message) { element.textContent = String(message); });
    }
    if (kind && kind !== 'text') { element.src = row.dataset.href; }
    box.appendChild(element);
    viewer.showModal();
    $('preview-close').focus();
  }
  if (viewer) {
    $('preview-close').addEventListener('click', function () { viewer.close(); });
    viewer.addEventListener('close', function () { $('preview-body').replaceChildren(); });
  }
  rows.forEach(function (row) {
    if (row.dataset.kind !== 'file' || !kindOf(row.dataset.type || '')) { return; }
    row.querySelector('td.name a').addEventListener('click', function (event) {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) { return; }
      event.preventDefault();
      preview(row);
    });
  });

  // -- the Mount panel ------------------------------------------------------------------
  var mount = $('mount');
  if (mount) {
    $('mount-open').addEventListener('click', function () { mount.showModal(); });
    $('mount-close').addEventListener('click', function () { mount.close(); });
  }
  document.querySelectorAll('button[data-copy]').forEach(function (button) {
    button.addEventListener('click', function () {
      var text = $(button.dataset.copy).textContent;
      var done = function () { button.textContent = 'Copied'; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { select(button.dataset.copy); });
      } else {
        select(button.dataset.copy);
      }
    });
  });
  function select(id) {
    var range = document.createRange();
    range.selectNodeContents($(id));
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // -- uploads: a progress bar and a message per file -------------------------------------
  var list = $('uploads');
  var stashed = sessionStorage.getItem(STASH);
  if (stashed) {
    sessionStorage.removeItem(STASH);
    JSON.parse(stashed).forEach(function (line) {
      var item = document.createElement('li');
      item.textContent = line.text;
      if (line.bad) { item.className = 'failed'; }
      list.appendChild(item);
    });
  }
  function uploadOne(file) {
    var item = document.createElement('li');
    var label = document.createElement('span');
    var bar = document.createElement('progress');
    var state = document.createElement('span');
    label.textContent = file.name;
    bar.max = file.size || 1;
    bar.value = 0;
    bar.setAttribute('aria-label', 'Upload of ' + file.name);
    item.append(label, bar, state);
    list.appendChild(item);
    return new Promise(function (resolve) {
      function failed(message) {
        item.className = 'failed';
        state.textContent = 'failed: ' + message;
        resolve({text: file.name + ': failed: ' + message, bad: true});
      }
      var request = new XMLHttpRequest();
      request.open('PUT', here + encodeURIComponent(file.name));
      request.setRequestHeader('X-Hoody-Page', '1');
      request.upload.onprogress = function (event) {
        if (event.lengthComputable) {
          bar.value = event.loaded;
          state.textContent = human(event.loaded) + ' of ' + human(event.total);
        }
      };
      request.onload = function () {
        if (relogin(request.status)) { return; }
        if (request.status >= 200 && request.status < 300) {
          bar.value = bar.max;
          state.textContent = 'uploaded';
          resolve({text: file.name + ': uploaded (' + human(file.size) + ')', bad: false});
          return;
        }
        var message = request.status + ' ' + request.statusText;
        try { message = JSON.parse(request.responseText).message || message; } catch (e) { /* not JSON */ }
        failed(message);
      };
      request.onerror = function () { failed('the connection failed (a folder, or the server went away?)'); };
      request.send(file);
    });
  }
  function upload(files) {
    if (!files.length) { return; }
    var existing = files.filter(function (f) {
      // (a folder of that name is no file to replace: the server says why it fails)
      return rows.some(function (row) { return row.dataset.name === f.name && row.dataset.kind !== 'dir'; });
    });
    var go = function () {
      var results = [], chain = Promise.resolve();
      files.forEach(function (file) {
        chain = chain.then(function () { return uploadOne(file); }).then(function (r) { results.push(r); });
      });
      return chain.then(function () {
        sessionStorage.setItem(STASH, JSON.stringify(results));
        location.reload();
      });
    };
    if (!existing.length) { go(); return; }
    ask('Replace ' + existing.map(function (f) { return f.name; }).join(', ') + '?', null,
      'Replace', function () { go(); return Promise.resolve('stay'); });
  }
  var picker = $('files');
  if (picker) {
    picker.addEventListener('change', function () {
      upload(Array.prototype.slice.call(picker.files));
      picker.value = '';
    });
    var drop = $('drop'), depth = 0;
    window.addEventListener('dragenter', function (event) {
      if (event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, 'Files') !== -1) {
        depth += 1;
        drop.hidden = false;
      }
    });
    window.addEventListener('dragleave', function () {
      depth = Math.max(0, depth - 1);
      if (!depth) { drop.hidden = true; }
    });
    window.addEventListener('dragover', function (event) { event.preventDefault(); });
    window.addEventListener('drop', function (event) {
      event.preventDefault();
      depth = 0;
      drop.hidden = true;
      if (event.dataTransfer) { upload(Array.prototype.slice.call(event.dataTransfer.files)); }
    });
  }
})();
