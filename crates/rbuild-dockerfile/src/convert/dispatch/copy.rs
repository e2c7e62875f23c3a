//! COPY and ADD: context, stage, image, heredoc, URL and git sources, and
//! `--link`.

use super::*;

impl Converter<'_> {
    /// `COPY <<EOF /dest`: each heredoc is a file made on an empty
    /// filesystem, then copied like any other source.
    pub(super) fn copy_heredocs(
        &mut self,
        state: &mut StageState,
        ins: &Instruction,
        copy: &Copy,
        name: String,
        keyword: &str,
    ) -> Result<(), ConvertError> {
        let mut files = Vec::new();
        for doc in &copy.heredocs {
            let data = if doc.expand { self.expand_heredoc(state, ins, &doc.content)? } else { doc.content.clone() };
            files.push(FileAction::Mkfile { path: format!("/{}", doc.name), mode: 0o644, data: data.into_bytes(), chown: None });
        }
        let scratch = self.add(Op::Scratch, vec![], "[internal] scratch".into());
        let docs = self.add(Op::File(FileOp { actions: files }), vec![scratch], format!("{name} (heredoc files)"));
        let raw_dest = self.expand(state, ins, &copy.dest)?;
        let (chown, chmod, flags) = self.copy_flags(state, ins, copy, keyword)?;
        let paths = copy.heredocs.iter().map(|d| d.name.clone()).collect();
        let action = CopyAction {
            chown,
            chmod,
            ..CopyAction::literal(1, paths, resolve_dest(&state.workdir(), &raw_dest))
        };
        self.place_copy(state, action, docs, copy.link, name);
        let names: Vec<String> = copy.heredocs.iter().map(|d| format!("<<{}", d.name)).collect();
        self.history(state, format!("{flags} {} {raw_dest}", names.join(" ")), true);
        Ok(())
    }

    /// `--chown` and `--chmod` after expansion, and the start of the history
    /// entry: the keyword and the flags BuildKit records (`--parents`,
    /// `--chown=…`, `--chmod=…`, in that order).
    pub(super) fn copy_flags(
        &self,
        state: &StageState,
        ins: &Instruction,
        copy: &Copy,
        keyword: &str,
    ) -> Result<(Option<Chown>, Option<String>, String), ConvertError> {
        let chown = copy.chown.as_deref().map(|c| self.expand(state, ins, c)).transpose()?;
        let chmod = copy.chmod.as_deref().map(|c| self.expand(state, ins, c)).transpose()?;
        let mut flags = keyword.to_string();
        if copy.parents && keyword == "COPY" {
            flags.push_str(" --parents");
        }
        if let Some(c) = &chown {
            flags.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            flags.push_str(&format!(" --chmod={c}"));
        }
        // With --link the copy is made on an empty filesystem: no names.
        let chown = match chown {
            Some(c) if copy.link => Some(crate::convert::remote::link_chown(&c).map_err(|m| self.err(ins, m))?),
            other => other,
        };
        Ok((chown.map(Chown), chmod, flags))
    }

    /// A heredoc body with variables expanded but quotes kept (BuildKit
    /// expands heredoc files without quote processing).
    pub(super) fn expand_heredoc(&self, state: &StageState, ins: &Instruction, body: &str) -> Result<String, ConvertError> {
        let lookup = state.lookup();
        let lexer = crate::shell::ShellLexer { skip_process_quotes: true, ..crate::shell::ShellLexer::new(self.df.escape) };
        lexer.process(body, &lookup).map(|e| e.value)
            .map_err(|e| self.err(ins, e.to_string()))
    }

    pub(super) fn copy(&mut self, state: &mut StageState, ins: &Instruction, copy: &Copy, name: String, is_add: bool) -> Result<(), ConvertError> {
        let keyword = if is_add { "ADD" } else { "COPY" };
        // Credentials in URLs appear in no vertex name and no history.
        let name = crate::convert::remote::redact_urls(&name);
        let checksum = copy.checksum.as_deref().map(|c| self.expand(state, ins, c)).transpose()?;
        let mut sources = Vec::new();
        let mut downloads = Vec::new();
        let mut repos = Vec::new();
        let mut shown = Vec::new();
        for s in &copy.sources {
            let s = self.expand(state, ins, s)?;
            match crate::classify_source(&s, is_add).map_err(|e| self.err(ins, crate::convert::remote::redact_urls(&e.to_string())))? {
                crate::SourceKind::Local => sources.push(s.clone()),
                crate::SourceKind::Http { url } => {
                    let src = crate::convert::remote::http_source(&url, checksum.clone()).map_err(|m| self.err(ins, m))?;
                    downloads.push(src);
                }
                crate::SourceKind::Git { remote, reference, subdir, .. } => {
                    let keep = copy.keep_git_dir.unwrap_or(false);
                    let src = crate::convert::remote::git_source(&remote, reference, subdir, keep).map_err(|m| self.err(ins, m))?;
                    repos.push(src);
                }
            }
            shown.push(crate::convert::remote::redact_urls(&s));
        }
        if checksum.is_some() && (!sources.is_empty() || downloads.len() != 1) {
            return Err(self.err(ins, "--checksum needs exactly one source, an http(s) URL"));
        }
        if !copy.heredocs.is_empty() {
            return self.copy_heredocs(state, ins, copy, name, keyword);
        }
        let raw_dest = self.expand(state, ins, &copy.dest)?;
        let dest = resolve_dest(&state.workdir(), &raw_dest);
        let (chown, chmod, flags) = self.copy_flags(state, ins, copy, keyword)?;
        let mut actions = Vec::new();
        let mut inputs = Vec::new();
        if !sources.is_empty() || (downloads.is_empty() && repos.is_empty()) {
            let source_vertex = match &copy.from {
                None => self.context_vertex(),
                Some(from) => {
                    let from = self.expand(state, ins, from)?;
                    self.vertex_named_by_from(state, &from)?
                }
            };
            inputs.push(source_vertex);
            actions.push(FileAction::Copy(CopyAction {
                source: inputs.len(),
                paths: sources.clone(),
                dest: dest.clone(),
                chown: chown.clone(),
                chmod: chmod.clone(),
                exclude: copy.exclude.clone(),
                parents: copy.parents,
                follow_symlinks: true,
                allow_wildcard: true,
                allow_empty_wildcard: true,
                create_dest_path: true,
                unpack_archives: is_add && copy.unpack != Some(false),
            }));
        }
        for src in downloads {
            let filename = src.filename.clone();
            let vertex = self.add(Op::Http(src.clone()), vec![], src.url.clone());
            inputs.push(vertex);
            // Downloads are never unpacked (BuildKit's rule for remote URLs).
            actions.push(FileAction::Copy(CopyAction {
                chown: chown.clone(),
                chmod: chmod.clone(),
                ..CopyAction::literal(inputs.len(), vec![filename], dest.clone())
            }));
        }
        for src in repos {
            let vertex = self.add(Op::Git(src.clone()), vec![], crate::convert::remote::redact_urls(&src.remote));
            inputs.push(vertex);
            // The checkout's contents go into the destination directory.
            actions.push(FileAction::Copy(CopyAction {
                chown: chown.clone(),
                chmod: chmod.clone(),
                exclude: copy.exclude.clone(),
                ..CopyAction::literal(inputs.len(), vec!["/".to_string()], dest.clone())
            }));
        }
        self.place_copies(state, actions, inputs, copy.link, name);
        self.history(state, format!("{flags} {} {raw_dest}", shown.join(" ")), true);
        Ok(())
    }

    /// Adds a copy from input 1 (`source`): onto the stage's filesystem, or
    /// with `--link` onto an empty one, stacked onto the stage by a merge, so
    /// the copied layer (its cache key and its blob) does not depend on the
    /// layers below and the destination is not resolved through them.
    pub(super) fn place_copy(&mut self, state: &mut StageState, action: CopyAction, source: VertexId, link: bool, name: String) {
        self.place_copies(state, vec![FileAction::Copy(action)], vec![source], link, name);
    }

    /// [`Self::place_copy`] for several copies; input `i + 1` is `sources[i]`.
    pub(super) fn place_copies(&mut self, state: &mut StageState, actions: Vec<FileAction>, sources: Vec<VertexId>, link: bool, name: String) {
        let op = Op::File(FileOp { actions });
        if link {
            let scratch = self.add(Op::Scratch, vec![], "[internal] scratch".into());
            let layer = self.add(op, [vec![scratch], sources].concat(), name.clone());
            state.vertex = self.add(Op::Merge, vec![state.vertex, layer], format!("[internal] link {name}"));
        } else {
            state.vertex = self.add(op, [vec![state.vertex], sources].concat(), name);
        }
    }
}
