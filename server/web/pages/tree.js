// pages/tree.js: the tag tree (#tag-tree) on the tags page. Lazy: a
// folder's children are fetched (GET /api/tree?prefix=…) only when it is
// first expanded, PAGE at a time, with a "more" item for the next page
// (after = the last child's path), so 100,000 tags never load at once.

import * as api from '../api.js';
import { el, errorText, fmtCount } from '../ui.js';

const PAGE = 500;

export class Tree {
  /** onFolder(path) when a folder is picked, onTag(tag) when a tag is. */
  constructor(container, { onFolder, onTag }) {
    this.onFolder = onFolder;
    this.onTag = onTag;
    this.tags = new Map(); // tag name -> tag object, for onTag
    this.selected = null;
    this.root = el('ul', { class: 'tree', role: 'tree' });
    container.append(this.root);
    container.addEventListener('click', (ev) => this.click(ev));
    container.addEventListener('keydown', (ev) => this.key(ev));
    this.rootLoaded = this.load(this.root, '', undefined);
  }

  click(ev) {
    const more = ev.target.closest('.tree-more');
    if (more) return this.loadMore(more);
    const folder = ev.target.closest('.tree-folder');
    if (folder) return this.pickFolder(folder, Boolean(ev.target.closest('.twisty')));
    const tag = ev.target.closest('.tree-tag');
    if (tag) {
      this.select(tag);
      this.onTag(this.tags.get(tag.dataset.tag) || { name: tag.dataset.tag });
    }
    return undefined;
  }

  key(ev) {
    if (ev.key !== 'Enter' && ev.key !== ' ') return;
    const node = ev.target.closest('.tree-folder, .tree-tag, .tree-more');
    if (!node) return;
    ev.preventDefault();
    node.click();
  }

  /** A click on the twisty only toggles; on the name it also fills the table. */
  pickFolder(folder, twistyOnly) {
    const li = folder.parentElement;
    const open = li.classList.contains('open');
    if (twistyOnly) return this.toggle(li, !open);
    if (open && this.selected === folder) this.toggle(li, false);
    else this.toggle(li, true);
    this.select(folder);
    this.onFolder(folder.dataset.path);
    return undefined;
  }

  select(node) {
    if (this.selected) this.selected.classList.remove('selected');
    this.selected = node;
    node.classList.add('selected');
  }

  /** Opens or closes a folder's list; resolves once its first page is there. */
  toggle(li, open) {
    li.classList.toggle('open', open);
    li.querySelector(':scope > .tree-folder').setAttribute('aria-expanded', String(open));
    const ul = li.querySelector(':scope > ul');
    ul.hidden = !open;
    if (open && !ul.loading) ul.loading = this.load(ul, li.querySelector(':scope > .tree-folder').dataset.path, undefined);
    return ul.loading || Promise.resolve();
  }

  /** Opens the folders down to path (a deep link) as far as their loaded pages reach, and selects it; nothing when it is the selected one already. */
  async reveal(path) {
    if (this.selected && this.selected.dataset.path === path) return;
    await this.rootLoaded;
    let prefix = '';
    for (const seg of path.split('/').filter(Boolean)) {
      prefix += `${seg}/`;
      const folder = this.root.querySelector(`.tree-folder[data-path="${CSS.escape(prefix)}"]`);
      if (!folder) return;
      if (prefix === path) this.select(folder);
      await this.toggle(folder.parentElement, true);
    }
  }

  async loadMore(button) {
    const ul = button.closest('ul');
    button.closest('li').remove();
    await this.load(ul, button.dataset.prefix, button.dataset.after);
  }

  /** Appends a page of a folder's children to ul. */
  async load(ul, prefix, after) {
    const waiting = el('li', { class: 'tree-loading', text: 'loading…' });
    ul.append(waiting);
    try {
      const answer = await api.tree(prefix, after, PAGE);
      waiting.remove();
      ul.append(...answer.children.map((c) => this.node(c)));
      if (answer.more && answer.children.length) {
        const last = answer.children[answer.children.length - 1];
        ul.append(this.moreItem(prefix, last.path));
      }
      if (!answer.children.length && !after) ul.append(el('li', { class: 'tree-empty', text: '(empty)' }));
    } catch (err) {
      waiting.remove();
      ul.append(el('li', { class: 'tree-error error', text: errorText(err) }));
    }
  }

  moreItem(prefix, after) {
    const button = el('button', { type: 'button', class: 'tree-more link', text: 'more…' });
    button.dataset.prefix = prefix;
    button.dataset.after = after;
    return el('li', {}, button);
  }

  node(child) {
    if (child.kind === 'folder') return this.folderNode(child);
    this.tags.set(child.path, child.tag || { name: child.path });
    const label = el('div', { class: 'tree-tag', tabindex: '0', role: 'treeitem', title: child.path, text: child.segment });
    label.dataset.tag = child.path;
    return el('li', {}, label);
  }

  folderNode(child) {
    const label = el('div', { class: 'tree-folder', tabindex: '0', role: 'treeitem', 'aria-expanded': 'false' },
      el('span', { class: 'twisty', 'aria-hidden': 'true' }),
      el('span', { class: 'name', text: child.segment }),
      Number.isFinite(child.tags) ? el('span', { class: 'count', text: fmtCount(child.tags) }) : null);
    label.dataset.path = child.path;
    return el('li', { class: 'folder' }, label, el('ul', { role: 'group', hidden: true }));
  }
}
